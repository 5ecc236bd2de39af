"""Cohort hypergraph builder (paper Sec. IV-B, Eq. 4): one GraphTensor per cohort.

Each user i of a cohort gets one hyperedge ``{i} ∪ kNN_k(i)``: itself and its k nearest
cohort members by Euclidean distance on the standardized static features (ties broken
by position, so the result is deterministic). A cohort smaller than k+1 users uses all
of its other members. The same functions build graphs in the Beam dataset job and in
the serving client, so training and serving see the same structure.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from htgnn_tf.data import graph_schema as gs


def standardize(points: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(x - mean) / std per column; columns with std 0 are only centred."""
    std = np.asarray(std, np.float64)
    return (np.asarray(points, np.float64) - np.asarray(mean, np.float64)) / np.where(
        std > 0, std, 1.0)


def knn_hyperedges(points: np.ndarray, k: int) -> np.ndarray:
    """Members of every hyperedge ``{i} ∪ kNN_k(i)``.

    Args:
      points: [users, dims] standardized static features of one cohort.
      k: neighbours per hyperedge.

    Returns:
      int array [users, min(k, users-1) + 1]; row i starts with i, then its
      neighbours from nearest to farthest.
    """
    points = np.asarray(points, np.float64)
    n = points.shape[0]
    if n == 0:
        return np.zeros([0, 1], np.int64)
    k_eff = min(k, n - 1)
    sq = np.sum(points * points, axis=1)
    dist = sq[:, None] + sq[None, :] - 2.0 * points @ points.T  # [users, users]
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, -1.0)  # self first
    order = np.argsort(dist, axis=1, kind="stable")  # ties broken by index
    return order[:, : k_eff + 1].astype(np.int64)


def incidence_indices(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hyperedge index, user index) of every non-zero of H, hyperedge-major."""
    n, m = members.shape
    return np.repeat(np.arange(n, dtype=np.int64), m), members.reshape(-1).astype(np.int64)


def build_cohort_graph(users: Sequence[Mapping[str, object]], knn_points: np.ndarray,
                       k: int, dims: gs.FeatureDims, with_labels: bool):
    """A GraphTensor for one cohort.

    Args:
      users: per-user feature dicts with the names of :mod:`graph_schema`.
      knn_points: [users, dims] standardized static features, same order as users.
      k: neighbours per hyperedge.
      dims: feature sizes of the dataset.
      with_labels: whether to include label features (training) or not (serving).
    """
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

    n = len(users)
    members = knn_hyperedges(knn_points, k)
    source, target = incidence_indices(members)
    features = {}
    for name, (dtype, shape) in gs.user_feature_specs(dims, with_labels).items():
        values = [u[name] for u in users]
        if dtype == "string":
            array = np.array([str(v) for v in values], dtype=object)
        else:
            array = np.asarray(values, dtype=np.float32 if dtype == "float32" else np.int64)
            array = array.reshape([n] + shape)
        features[name] = tf.constant(array)
    return tfgnn.GraphTensor.from_pieces(
        node_sets={
            gs.USER: tfgnn.NodeSet.from_fields(sizes=tf.constant([n]), features=features),
            gs.HYPEREDGE: tfgnn.NodeSet.from_fields(sizes=tf.constant([n])),
        },
        edge_sets={
            gs.INCIDENCE: tfgnn.EdgeSet.from_fields(
                sizes=tf.constant([len(source)]),
                adjacency=tfgnn.Adjacency.from_indices(
                    source=(gs.HYPEREDGE, tf.constant(source)),
                    target=(gs.USER, tf.constant(target)))),
        })


def cohort_example_bytes(users, knn_points, k, dims, with_labels) -> bytes:
    """The cohort graph serialized as a tf.train.Example (``tfgnn.write_example``), with
    its feature map in a fixed order, so the same users give the same bytes on every run
    (the benchmark's cache is keyed by the dataset's bytes)."""
    import tensorflow_gnn as tfgnn

    graph = build_cohort_graph(users, knn_points, k, dims, with_labels)
    return tfgnn.write_example(graph).SerializeToString(deterministic=True)
