"""Task-adaptive mixture of experts (PLE-like extraction layers).

Implements Eq. (12)-(17) of the HT-GNN paper. Each of ``num_layers`` extraction layers
has ``num_task_experts`` experts per task and ``num_shared_experts`` shared experts,
each ``E(x) = ReLU(BatchNorm(W x + b))`` (Eq. 12). Task ``t`` mixes its own experts and
the shared ones (Eq. 16), the shared branch mixes all experts (Eq. 17); the mixing
weights are sigmoid gates computed from the observed-length embedding ``u_mask``
(Eq. 13). Layer ``k`` feeds the task experts of task ``t`` with ``u^{t(k-1)}`` and the
shared experts with ``u^{s(k-1)}``; layer 1 feeds ``u^(0)`` to all of them.

Parameter layout: the experts of a layer are stacked on one axis, task 0's
``num_task_experts`` first, then task 1's, ..., then the shared ones. The gate ``Dense``
of a layer outputs, for each task in order, ``num_task_experts + num_shared_experts``
gates (own experts, then shared), followed (except in the last layer) by one gate per
expert for the shared branch.

All experts of a layer run in ONE einsum over an expert axis (each expert gathers the
input of its branch first); gates are computed in float32.

Departures and decisions where the paper is ambiguous:

* Gate-weighted sums are normalised by the sum of the gates:
  ``u^{t(k)} = sum_j w_j E_j / (sum_j w_j + 1e-6)``. The sigmoid gates of Eq. (13) are
  independent, so Eq. (16) read literally scales the output by up to the number of
  experts; normalising keeps it a convex combination of expert outputs (so the width
  and scale fed to the towers do not depend on the expert counts) while the gates keep
  their independent sigmoid form.
* The shared branch of the last layer feeds nothing, so it is not computed (as in PLE).
* ``use_dynamic_weighting=False`` (ablation "w/o DW", plain multi-task learning): the
  gates are ``sigmoid(b)`` of learned biases, the same for every user; ``u_mask`` is
  ignored.
* Gate usage is reported as Keras metrics ``gate_task{t}_expert{j}`` (task ``t``'s own
  expert ``j``) and ``gate_task{t}_shared{j}`` (shared expert ``j``): the batch mean of
  the last layer's task gates, before normalisation.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

GATE_EPSILON = 1e-6


def _check_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@tf.keras.utils.register_keras_serializable(package="htgnn")
class TaskAdaptiveMoE(tf.keras.layers.Layer):
    """Stacked task-adaptive expert layers with ``u_mask``-driven gates (Eq. 12-17).

    Init arguments (keyword-only):
      num_tasks: number of tasks (``{LT, LTV} x horizons``).
      num_task_experts: experts per task and layer (``>= 1``).
      num_shared_experts: shared experts per layer (``>= 0``).
      expert_units: output width of every expert, hence of every branch.
      num_layers: number of extraction layers (``>= 1``).
      use_dynamic_weighting: gates from ``u_mask`` (Eq. 13) if True; learned constant
        gates if False (ablation "w/o DW").

    Call arguments:
      inputs: a pair ``(u0, u_mask)``: float ``[users, D]`` (``[u_sc; u_se]``) and float
        ``[users, M]``.
      training: BatchNorm uses batch statistics in training, moving ones otherwise.

    Returns:
      float ``[users, num_tasks, expert_units]``, the task representations
      ``u^{t(K)}`` of the last layer.
    """

    def __init__(self, *, num_tasks: int, num_task_experts: int, num_shared_experts: int,
                 expert_units: int, num_layers: int = 1, use_dynamic_weighting: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        _check_int("num_tasks", num_tasks, 1)
        _check_int("num_task_experts", num_task_experts, 1)
        _check_int("num_shared_experts", num_shared_experts, 0)
        _check_int("expert_units", expert_units, 1)
        _check_int("num_layers", num_layers, 1)
        if not isinstance(use_dynamic_weighting, bool):
            raise ValueError(
                f"use_dynamic_weighting must be a bool, got {use_dynamic_weighting!r}")
        self.num_tasks = num_tasks
        self.num_task_experts = num_task_experts
        self.num_shared_experts = num_shared_experts
        self.expert_units = expert_units
        self.num_layers = num_layers
        self.use_dynamic_weighting = use_dynamic_weighting

        # Expert n < num_tasks * num_task_experts belongs to task n // num_task_experts,
        # the rest are shared (branch index num_tasks).
        num_own = num_tasks * num_task_experts
        self._num_experts = num_own + num_shared_experts
        self._task_gate_width = num_task_experts + num_shared_experts
        self._expert_branch = np.concatenate(
            [np.repeat(np.arange(num_tasks), num_task_experts),
             np.full(num_shared_experts, num_tasks)]).astype(np.int32)  # [experts]
        # Expert index of gate g of task t (own experts first, then shared), and the
        # one-hot map from task gates to the expert axis: [tasks, task_gate_width, experts].
        own_columns = (np.arange(num_tasks)[:, np.newaxis] * num_task_experts +
                       np.arange(num_task_experts)[np.newaxis])  # [tasks, task_experts]
        shared_columns = np.broadcast_to(
            num_own + np.arange(num_shared_experts), [num_tasks, num_shared_experts])
        gate_columns = np.concatenate([own_columns, shared_columns], axis=1)  # [tasks, width]
        self._task_gate_selection = np.eye(
            self._num_experts, dtype=np.float32)[gate_columns]  # [tasks, width, experts]

        self.expert_norms = [
            tf.keras.layers.BatchNormalization(axis=[-2, -1], name=f"expert_norm_{k}")
            for k in range(num_layers)]
        if use_dynamic_weighting:
            self.gates = [tf.keras.layers.Dense(self._num_gates(k), dtype="float32",
                                                name=f"gate_{k}")
                          for k in range(num_layers)]
        self._gate_metric_names = (
            [f"gate_task{t}_expert{j}" for t in range(num_tasks)
             for j in range(num_task_experts)] +
            [f"gate_task{t}_shared{j}" for t in range(num_tasks)
             for j in range(num_shared_experts)])

    def _num_gates(self, layer: int) -> int:
        """Task gates, plus the shared-branch gates except in the last layer."""
        has_shared_branch = layer < self.num_layers - 1
        return (self.num_tasks * self._task_gate_width +
                (self._num_experts if has_shared_branch else 0))

    def build(self, input_shape):
        u0_shape, _ = input_shape
        input_dim = int(u0_shape[-1])
        self.expert_kernels, self.expert_biases, self.gate_biases = [], [], []
        for k in range(self.num_layers):
            fan_in = input_dim if k == 0 else self.expert_units
            limit = np.sqrt(6.0 / (fan_in + self.expert_units))  # Glorot per expert
            self.expert_kernels.append(self.add_weight(
                name=f"expert_kernel_{k}", shape=[self._num_experts, fan_in, self.expert_units],
                initializer=tf.keras.initializers.RandomUniform(-limit, limit)))
            self.expert_biases.append(self.add_weight(
                name=f"expert_bias_{k}", shape=[self._num_experts, self.expert_units],
                initializer="zeros"))
            if not self.use_dynamic_weighting:
                self.gate_biases.append(self.add_weight(
                    name=f"gate_bias_{k}", shape=[self._num_gates(k)], initializer="zeros",
                    dtype=tf.float32))
        super().build(input_shape)

    def _gate_values(self, layer: int, u_mask):
        """Sigmoid gates of Eq. (13), float32 ``[users, num_gates(layer)]``."""
        if self.use_dynamic_weighting:
            return tf.sigmoid(self.gates[layer](tf.cast(u_mask, tf.float32)))
        constant = tf.sigmoid(self.gate_biases[layer])[tf.newaxis]  # [1, gates]
        return tf.tile(constant, [tf.shape(u_mask)[0], 1])  # [users, gates]

    def call(self, inputs, training=None):
        u0, u_mask = inputs
        branch_inputs = tf.repeat(u0[:, tf.newaxis], self.num_tasks + 1, axis=1)  # [users, tasks+1, D]
        for k in range(self.num_layers):
            is_last = k == self.num_layers - 1
            expert_inputs = tf.gather(branch_inputs, self._expert_branch, axis=1)  # [users, experts, D_k]
            experts = tf.einsum("und,nde->une", expert_inputs,
                                self.expert_kernels[k]) + self.expert_biases[k]  # [users, experts, units]
            experts = tf.nn.relu(
                self.expert_norms[k](experts, training=training))  # [users, experts, units], Eq. (12)

            gate_values = self._gate_values(k, u_mask)  # [users, gates], float32
            task_gates = tf.reshape(
                gate_values[:, :self.num_tasks * self._task_gate_width],
                [-1, self.num_tasks, self._task_gate_width])  # [users, tasks, task_gate_width]
            branch_gates = tf.einsum("utg,tgn->utn", task_gates,
                                     self._task_gate_selection)  # [users, tasks, experts], Eq. (16)
            if not is_last:
                shared_gates = gate_values[:, self.num_tasks * self._task_gate_width:]  # [users, experts]
                branch_gates = tf.concat(
                    [branch_gates, shared_gates[:, tf.newaxis]], axis=1)  # [users, tasks+1, experts], Eq. (17)
            branch_gates /= tf.reduce_sum(branch_gates, axis=-1, keepdims=True) + GATE_EPSILON
            branch_inputs = tf.einsum("ubn,une->ube", tf.cast(branch_gates, experts.dtype),
                                      experts)  # [users, branches, units]
        self._add_gate_metrics(task_gates)
        return branch_inputs  # [users, tasks, units]

    def _add_gate_metrics(self, task_gates):
        own = task_gates[:, :, :self.num_task_experts]  # [users, tasks, task_experts]
        shared = task_gates[:, :, self.num_task_experts:]  # [users, tasks, shared_experts]
        means = tf.concat([tf.reshape(tf.reduce_mean(own, axis=0), [-1]),
                           tf.reshape(tf.reduce_mean(shared, axis=0), [-1])], axis=0)  # [metrics]
        for index, name in enumerate(self._gate_metric_names):
            self.add_metric(means[index], name=name, aggregation="mean")

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks,
                "num_task_experts": self.num_task_experts,
                "num_shared_experts": self.num_shared_experts,
                "expert_units": self.expert_units, "num_layers": self.num_layers,
                "use_dynamic_weighting": self.use_dynamic_weighting}
