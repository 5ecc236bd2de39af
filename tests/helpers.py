"""Shared test data for the model, training and evaluation tests.

* :func:`tiny_dataset`: a simulated log of 400 users (4 metrics) turned into cohort
  TFRecords by the real Beam dataset job (``beam_pipelines.build_dataset.run``), with
  cohorts of about 20 users (>= 10 train cohorts, so the validation split is not empty)
  and W = 7 observed days.
* :func:`tiny_config`: a ModelConfig from that dataset's transform.json with small dims.
* :func:`trained_model`: one short ``training.train`` run (2 epochs, 3 steps each).
* :func:`exported_model`: that run exported for serving (``<base>/htgnn/<version>/``), and
  :func:`model_server`: a real ``python -m serving.server`` subprocess serving it.

Each is built once per test session (memoized here, since a fixture imported into
several test modules would otherwise run once per module); the pytest fixtures
``tiny_data``, ``trained`` and ``version_dir`` wrap them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal

import numpy as np
import pytest

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
import tensorflow as tf
import tensorflow_gnn as tfgnn

from htgnn_tf import training
from htgnn_tf.config import ModelConfig, TrainConfig
from htgnn_tf.data import graph_schema as gs

_CACHE: dict[str, object] = {}

SMALL_DIMS = dict(
    features={"embedding_dim": 4},
    hypergraph={"units": 8, "num_layers": 2},
    sequence={"dim": 8, "num_heads": 2, "ffn_units": 16, "dropout": 0.0},
    mask={"dim": 4},
    moe={"num_task_experts": 1, "num_shared_experts": 1, "expert_units": 8, "num_layers": 1},
    tower={"hidden_units": (4, 4)},
)
TRAIN_EPOCHS = 2
TRAIN_STEPS = 3


def tiny_dataset(root: str) -> str:
    """Builds (once) the tiny dataset under `root`; returns its directory."""
    if "data" not in _CACHE:
        from beam_pipelines import build_dataset, simulate
        from htgnn_tf.data.spec import load_spec

        spec_path = simulate.simulate(os.path.join(root, "raw"), num_users=400, seed=0,
                                      num_metrics=4)
        spec = dataclasses.replace(load_spec(str(spec_path)), cohort_size=20, knn_k=4,
                                   observation_days=7, train_fraction=0.7, max_bins=16)
        out = os.path.join(root, "data")
        build_dataset.run(spec, out)
        _CACHE["data"] = out
    return _CACHE["data"]


def tiny_config(data_dir: str, **overrides) -> ModelConfig:
    """ModelConfig of the tiny dataset with small dims; `overrides` as in from_artifacts
    (block dicts are merged into SMALL_DIMS)."""
    kwargs = {name: dict(value) for name, value in SMALL_DIMS.items()}
    for name, value in overrides.items():
        if isinstance(value, dict) and name in kwargs:
            kwargs[name].update(value)
        else:
            kwargs[name] = value
    return ModelConfig.from_artifacts(training.read_artifacts(data_dir), **kwargs)


def trained_model(root: str, data_dir: str):
    """Trains (once) a tiny model; returns (model dir, training model, history)."""
    if "trained" not in _CACHE:
        out = os.path.join(root, "model")
        model, history = training.train(
            data_dir, out, tiny_config(data_dir),
            TrainConfig(epochs=TRAIN_EPOCHS, batch_cohorts=2, early_stopping_patience=5),
            verbose=0, max_steps_per_epoch=TRAIN_STEPS)
        _CACHE["trained"] = (out, model, history)
    return _CACHE["trained"]


SERVED_MODEL = "htgnn"


def exported_model(root: str, trained_dir: str) -> str:
    """The short training run exported under ``<root>/htgnn/``; returns its version dir."""
    if "exported" not in _CACHE:
        from htgnn_tf import export
        _CACHE["exported"] = export.export(trained_dir, os.path.join(root, SERVED_MODEL))
    return _CACHE["exported"]


@contextlib.contextmanager
def model_server(version_dir: str):
    """Yields ``host:port`` of a real model server subprocess on loopback serving the
    model of `version_dir` (its base path, as model ``htgnn``); SIGTERM on exit."""
    from htgnn_tf import demo
    from serving.client import PredictClient

    port = demo.free_port()
    server = demo.start_server(os.path.dirname(version_dir), port)
    try:
        with PredictClient(f"127.0.0.1:{port}", SERVED_MODEL, timeout=60.0) as client:
            demo.wait_until_serving(client, server)
        yield f"127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return tiny_dataset(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_data):
    """(model dir, training model, history) of the short training run."""
    return trained_model(str(tmp_path_factory.mktemp("trained")), tiny_data)


@pytest.fixture(scope="session")
def version_dir(tmp_path_factory, trained):
    """The exported version dir of the short training run."""
    return exported_model(str(tmp_path_factory.mktemp("serving")), trained[0])


def serialized_cohorts(data_dir: str, split: str) -> list[bytes]:
    """The serialized cohort examples of a split, in file order."""
    return [x.numpy() for x in training.cohort_dataset(data_dir, split)]


def parse_batch(data_dir: str, examples: list[bytes], with_labels: bool = True):
    """A batch of cohort graphs parsed like training.parsed does."""
    spec = tfgnn.create_graph_spec_from_schema_pb(training.read_schema(data_dir, with_labels))
    return tfgnn.parse_example(spec, tf.constant(examples))


def user_arrays(graph) -> dict[str, np.ndarray]:
    """Every user feature of a (batched) graph as a flat numpy array over all users."""
    users = graph.merge_batch_to_components().node_sets[gs.USER]
    return {name: value.numpy() for name, value in users.features.items()}


def replace_user_features(graph, **features):
    """A parsed batch with some user features replaced by `features[name](flat values)`."""
    users = dict(graph.node_sets[gs.USER].features)
    for name, fn in features.items():
        users[name] = users[name].with_flat_values(fn(users[name].flat_values))
    return graph.replace_features(node_sets={gs.USER: users})
