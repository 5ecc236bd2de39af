"""The test SavedModels: shaped like the htgnn export, with values known in closed form.

``serving_default`` takes ``examples`` (serialized tf.train.Example with a float ``x``
and a string ``user_id``), parses them in-graph and answers ``user_id`` plus one tensor
per task: ``ltv_30 = 2 * x + version`` and ``lt_30 = x + 1``. A second signature
``scale`` takes a float input ``x`` directly and answers ``y = 3 * x``.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

MODEL = "ltv"


class LtvModule(tf.Module):
    def __init__(self, version: int):
        super().__init__()
        self.offset = tf.Variable(float(version), name="offset")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        features = tf.io.parse_example(examples, {
            "x": tf.io.FixedLenFeature([], tf.float32),
            "user_id": tf.io.FixedLenFeature([], tf.string)})
        return {"user_id": features["user_id"],
                "ltv_30": 2.0 * features["x"] + self.offset,
                "lt_30": features["x"] + 1.0}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def scale(self, x):
        return {"y": 3.0 * x}


def write_version(base_path: str, version: int) -> str:
    """Exports version ``version`` the way a publisher should: temp dir, then rename."""
    module = LtvModule(version)
    staging = os.path.join(base_path, f".staging-{version}")
    tf.saved_model.save(module, staging, signatures={"serving_default": module.serve,
                                                     "scale": module.scale})
    final = os.path.join(base_path, str(version))
    os.rename(staging, final)
    return final


def serialize(x: float, user_id: str) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
        "user_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[user_id.encode()])),
    })).SerializeToString()


def examples(xs, prefix="u") -> np.ndarray:
    return np.array([serialize(x, f"{prefix}{i}") for i, x in enumerate(xs)], dtype=object)
