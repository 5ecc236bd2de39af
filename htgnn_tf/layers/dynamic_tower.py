"""Dynamic prediction towers whose weights are generated from ``u_mask``.

Implements Eq. (18) of the HT-GNN paper: per task, a three-layer tower whose weight
matrices are produced by a hypernetwork from the observed-length embedding ``u_mask``,

    W1, W2, W3 = Reshape(W_d u_mask + b_d),
    h1 = sigmoid(x W1 + c1),  h2 = sigmoid(h1 W2 + c2),  y = h2 W3 + c3,

with a final sigmoid for the classification towers and the raw ``y`` for regression.
All tasks share one hypernetwork ``Dense`` (``W_d``) whose output is laid out task-major:
for task ``t``, the row-major entries of ``W1``, then ``W2``, then ``W3``.

Departures and decisions where the paper is ambiguous:

* The linear layers have biases ``c1, c2, c3`` per task; they are learned directly, not
  generated (Eq. 18 generates only the weight matrices).
* ``b_d`` is stored as three weights ``b_d1 [tasks, input_dim, h1]``,
  ``b_d2 [tasks, h1, h2]``, ``b_d3 [tasks, h2, 1]``, the pieces of the reshaped bias.
* Initialisation: ``W_d = 0`` and each ``b_dk`` Glorot-uniform for its own matrix
  shape, ``c = 0``. At the start every user's tower is therefore a standard
  Glorot-initialised MLP; the hidden sigmoids are in ``(0, 1)``, so the regression
  output starts at ``O(1)`` around 0 and the classification output near 0.5. The
  dependence on ``u_mask`` is learned from there (``W_d`` gets gradients immediately
  because ``u_mask`` is non-zero).
* The per-user matrices are never materialised: ``x W_k`` is computed as
  ``sum_m u_mask[m] (x Reshape(W_d[m])) + x b_dk``, which is the same sum in another order.
* ``use_dynamic_towers=False`` (ablation "w/o DT"): a plain per-task linear layer
  (Glorot-uniform weights, zero bias), with a sigmoid for classification; ``u_mask`` is
  ignored.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import tensorflow as tf

TowerKind = Literal["regression", "classification"]
TOWER_KINDS = ("regression", "classification")


def _glorot_uniform(fan_in: int, fan_out: int):
    limit = float(np.sqrt(6.0 / (fan_in + fan_out)))
    return tf.keras.initializers.RandomUniform(-limit, limit)


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@tf.keras.utils.register_keras_serializable(package="htgnn")
class DynamicTower(tf.keras.layers.Layer):
    """Per-task towers with ``u_mask``-generated weights (Eq. 18).

    Init arguments (keyword-only):
      num_tasks: number of towers.
      input_dim: width of each task's input (the MoE ``expert_units``).
      hidden_units: ``(h1, h2)``, widths of the two hidden layers.
      kind: ``"regression"`` (raw output) or ``"classification"`` (sigmoid output).
      use_dynamic_towers: hypernetwork towers if True; plain per-task linear (sigmoid)
        heads if False (ablation "w/o DT").

    Call arguments:
      inputs: a pair ``(x, u_mask)``: float ``[users, num_tasks, input_dim]`` and float
        ``[users, M]``.

    Returns:
      float ``[users, num_tasks]``: regression values, or probabilities in ``(0, 1)``.
    """

    def __init__(self, *, num_tasks: int, input_dim: int, hidden_units=(32, 16),
                 kind: TowerKind = "regression", use_dynamic_towers: bool = True, **kwargs):
        super().__init__(**kwargs)
        if not _is_positive_int(num_tasks):
            raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
        if not _is_positive_int(input_dim):
            raise ValueError(f"input_dim must be a positive int, got {input_dim!r}")
        if (not isinstance(hidden_units, (tuple, list)) or len(hidden_units) != 2 or
                not all(_is_positive_int(units) for units in hidden_units)):
            raise ValueError(f"hidden_units must be two positive ints, got {hidden_units!r}")
        if kind not in TOWER_KINDS:
            raise ValueError(f"kind must be one of {TOWER_KINDS}, got {kind!r}")
        if not isinstance(use_dynamic_towers, bool):
            raise ValueError(f"use_dynamic_towers must be a bool, got {use_dynamic_towers!r}")
        self.num_tasks = num_tasks
        self.input_dim = input_dim
        self.hidden_units = tuple(hidden_units)
        self.kind = kind
        self.use_dynamic_towers = use_dynamic_towers

        first, second = self.hidden_units
        self._matrix_shapes = [(input_dim, first), (first, second), (second, 1)]
        if use_dynamic_towers:
            generated_per_task = sum(rows * cols for rows, cols in self._matrix_shapes)
            self.weight_generator = tf.keras.layers.Dense(
                num_tasks * generated_per_task, use_bias=False, kernel_initializer="zeros",
                name="weight_generator")  # W_d of Eq. (18)

    def build(self, input_shape):
        tasks = self.num_tasks
        if self.use_dynamic_towers:
            self.generated_biases = [
                self.add_weight(name=f"generated_bias_{k + 1}", shape=[tasks, rows, cols],
                                initializer=_glorot_uniform(rows, cols))
                for k, (rows, cols) in enumerate(self._matrix_shapes)]  # b_d of Eq. (18)
            self.layer_biases = [
                self.add_weight(name=f"layer_bias_{k + 1}", shape=[tasks, cols],
                                initializer="zeros")
                for k, (_, cols) in enumerate(self._matrix_shapes)]
            self.weight_generator.build(input_shape[1])
        else:
            self.linear_kernel = self.add_weight(
                name="linear_kernel", shape=[tasks, self.input_dim],
                initializer=_glorot_uniform(self.input_dim, 1))
            self.linear_bias = self.add_weight(
                name="linear_bias", shape=[tasks], initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        x, u_mask = inputs  # [users, tasks, input_dim], [users, M]
        if self.use_dynamic_towers:
            output = self._dynamic_tower(x, u_mask)  # [users, tasks]
        else:
            output = tf.einsum("uti,ti->ut", x, self.linear_kernel) + self.linear_bias  # [users, tasks]
        if self.kind == "classification":
            output = tf.sigmoid(output)
        return output  # [users, tasks]

    def _dynamic_tower(self, x, u_mask):
        # x W_k with W_k = Reshape(W_d u_mask + b_d) is evaluated without building the
        # per-user matrices: x W_k = sum_m u_mask[m] (x Reshape(W_d[m])) + x b_dk. Same
        # values, but the contractions are batched over tasks only (large matmuls) instead
        # of over users x tasks (thousands of tiny ones), several times faster on CPU.
        kernel = tf.cast(self.weight_generator.kernel, x.dtype)  # [M, tasks * per_task]
        kernel = tf.reshape(kernel, [-1, self.num_tasks, kernel.shape[-1] // self.num_tasks])
        pieces = tf.split(kernel, [rows * cols for rows, cols in self._matrix_shapes],
                          axis=-1)  # [M, tasks, rows * cols] each
        u_mask = tf.cast(u_mask, x.dtype)  # [users, M]
        hidden = x  # [users, tasks, input_dim]
        for k, (piece, (rows, cols), bias, c) in enumerate(zip(
                pieces, self._matrix_shapes, self.generated_biases, self.layer_biases)):
            piece = tf.reshape(piece, [-1, self.num_tasks, rows, cols])  # [M, tasks, rows, cols]
            per_m = tf.einsum("uti,mtic->utmc", hidden, piece)  # [users, tasks, M, cols]
            out = (tf.einsum("utmc,um->utc", per_m, u_mask) +
                   tf.einsum("uti,tic->utc", hidden, tf.cast(bias, x.dtype)) +
                   tf.cast(c, x.dtype))  # [users, tasks, cols]
            hidden = tf.sigmoid(out) if k < len(self._matrix_shapes) - 1 else out
        return hidden[..., 0]  # [users, tasks]

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks,
                "input_dim": self.input_dim, "hidden_units": list(self.hidden_units),
                "kind": self.kind, "use_dynamic_towers": self.use_dynamic_towers}
