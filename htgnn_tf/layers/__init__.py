"""HT-GNN layers, one paper component per module."""
