"""Dataset specs, the GraphTensor contract and the cohort hypergraph builder."""
