"""Tests for htgnn_tf.layers.moe (task-adaptive MoE, Eq. 12-17)."""
import numpy as np
import pytest
import tensorflow as tf

from htgnn_tf.layers.moe import GATE_EPSILON, TaskAdaptiveMoE

BATCH_NORM_EPSILON = 1e-3  # tf.keras.layers.BatchNormalization default


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def set_random_weights(layer, rng):
    """Hand-set every weight, including BatchNorm moving statistics (variance > 0)."""
    layer.set_weights([
        rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if "moving_variance" in w.name
        else rng.normal(0.0, 0.7, w.shape).astype(np.float32)
        for w in layer.weights])


def reference_moe(layer, u0, u_mask):
    """Independent numpy forward pass at inference, one expert and one task at a time."""
    tasks, own, shared = layer.num_tasks, layer.num_task_experts, layer.num_shared_experts
    task_inputs, shared_input = [u0] * tasks, u0
    last_task_gates = None
    for k in range(layer.num_layers):
        kernel, bias = layer.expert_kernels[k].numpy(), layer.expert_biases[k].numpy()
        norm = layer.expert_norms[k]
        # BatchNorm over axes [experts, units] keeps [1, experts, units] parameters.
        gamma, beta = norm.gamma.numpy()[0], norm.beta.numpy()[0]
        mean, var = norm.moving_mean.numpy()[0], norm.moving_variance.numpy()[0]

        def expert(n, x):
            z = x @ kernel[n] + bias[n]
            z = (z - mean[n]) / np.sqrt(var[n] + BATCH_NORM_EPSILON) * gamma[n] + beta[n]
            return np.maximum(z, 0.0)  # Eq. (12)

        task_experts = [[expert(t * own + j, task_inputs[t]) for j in range(own)]
                        for t in range(tasks)]
        shared_experts = [expert(tasks * own + j, shared_input) for j in range(shared)]
        if layer.use_dynamic_weighting:
            gates = sigmoid(u_mask @ layer.gates[k].kernel.numpy() + layer.gates[k].bias.numpy())
        else:
            gates = np.tile(sigmoid(layer.gate_biases[k].numpy()), [len(u0), 1])

        def mix(gate_values, expert_outputs):
            total = sum(g[:, np.newaxis] * e for g, e in zip(gate_values.T, expert_outputs))
            return total / (gate_values.sum(axis=1, keepdims=True) + GATE_EPSILON)

        width = own + shared
        last_task_gates = [gates[:, t * width:(t + 1) * width] for t in range(tasks)]
        new_task_inputs = [mix(last_task_gates[t], task_experts[t] + shared_experts)
                           for t in range(tasks)]  # Eq. (16)
        if k < layer.num_layers - 1:
            all_experts = [e for per_task in task_experts for e in per_task] + shared_experts
            shared_input = mix(gates[:, tasks * width:], all_experts)  # Eq. (17)
        task_inputs = new_task_inputs
    return np.stack(task_inputs, axis=1), np.stack(last_task_gates, axis=1)


CASES = {
    "one_layer": dict(num_tasks=2, num_task_experts=2, num_shared_experts=1, num_layers=1,
                      use_dynamic_weighting=True),
    "two_layers": dict(num_tasks=3, num_task_experts=2, num_shared_experts=2, num_layers=2,
                       use_dynamic_weighting=True),
    "three_layers_no_shared": dict(num_tasks=2, num_task_experts=1, num_shared_experts=0,
                                   num_layers=3, use_dynamic_weighting=True),
    "without_dynamic_weighting": dict(num_tasks=3, num_task_experts=1, num_shared_experts=2,
                                      num_layers=2, use_dynamic_weighting=False),
}


def build_layer(case, rng, num_users=6, input_dim=5, mask_dim=3, units=4):
    layer = TaskAdaptiveMoE(expert_units=units, **CASES[case])
    u0 = rng.normal(size=[num_users, input_dim]).astype(np.float32)
    u_mask = rng.normal(size=[num_users, mask_dim]).astype(np.float32)
    layer((tf.constant(u0), tf.constant(u_mask)))
    set_random_weights(layer, rng)
    for metric in layer.metrics:
        metric.reset_state()
    return layer, u0, u_mask


@pytest.mark.parametrize("case", list(CASES))
def test_matches_numpy_reference(case):
    layer, u0, u_mask = build_layer(case, np.random.default_rng(0))
    got = layer((tf.constant(u0), tf.constant(u_mask)), training=False).numpy()
    want, _ = reference_moe(layer, u0, u_mask)
    assert got.shape == (6, layer.num_tasks, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gated_sum_is_normalised_by_the_gates():
    # One task, one own and one shared expert, scalar experts E_own(x) = 2x, E_shared(x) = 3x
    # (identity BatchNorm), gates sigmoid(log 3) = 0.75 and sigmoid(0) = 0.5:
    # u = (0.75 * 2 + 0.5 * 3) / (0.75 + 0.5) = 2.4 for x = 1.
    layer = TaskAdaptiveMoE(num_tasks=1, num_task_experts=1, num_shared_experts=1,
                            expert_units=1, num_layers=1)
    layer((tf.ones([1, 1]), tf.ones([1, 1])))
    layer.expert_kernels[0].assign([[[2.0]], [[3.0]]])
    layer.expert_biases[0].assign([[0.0], [0.0]])
    layer.expert_norms[0].moving_variance.assign(np.full([1, 2, 1], 1.0 - BATCH_NORM_EPSILON))
    layer.gates[0].kernel.assign([[0.0, 0.0]])
    layer.gates[0].bias.assign([np.log(3.0), 0.0])
    got = layer((tf.ones([1, 1]), tf.ones([1, 1])), training=False).numpy()
    np.testing.assert_allclose(got, [[[2.4 / (1.0 + GATE_EPSILON / 1.25)]]], rtol=1e-6)


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic", "without_dw"])
def test_gates_depend_on_u_mask_only_with_dynamic_weighting(dynamic):
    case = "two_layers" if dynamic else "without_dynamic_weighting"
    layer, u0, u_mask = build_layer(case, np.random.default_rng(1))
    base = layer((tf.constant(u0), tf.constant(u_mask))).numpy()
    other = layer((tf.constant(u0), tf.constant(u_mask + 1.0))).numpy()
    assert np.allclose(base, other) != dynamic


def test_gate_usage_metrics_are_mean_last_layer_gates():
    layer, u0, u_mask = build_layer("two_layers", np.random.default_rng(2))
    layer((tf.constant(u0), tf.constant(u_mask)))
    _, gates = reference_moe(layer, u0, u_mask)  # [users, tasks, own + shared]
    results = {metric.name: float(metric.result()) for metric in layer.metrics}
    assert len(results) == 3 * (2 + 2)
    for t in range(3):
        for j in range(2):
            assert results[f"gate_task{t}_expert{j}"] == pytest.approx(gates[:, t, j].mean(), abs=1e-6)
            assert results[f"gate_task{t}_shared{j}"] == pytest.approx(gates[:, t, 2 + j].mean(), abs=1e-6)


def test_training_uses_batch_statistics():
    layer, u0, u_mask = build_layer("one_layer", np.random.default_rng(3))
    layer((tf.constant(u0), tf.constant(u_mask)), training=True)
    # After one training step the moving mean moved 1% (momentum 0.99) towards the batch mean.
    norm = layer.expert_norms[0]
    kernel, bias = layer.expert_kernels[0].numpy(), layer.expert_biases[0].numpy()
    batch_mean = (np.einsum("ud,nde->une", u0, kernel).mean(axis=0) + bias)[np.newaxis]
    previous = build_layer("one_layer", np.random.default_rng(3))[0].expert_norms[0].moving_mean.numpy()
    np.testing.assert_allclose(norm.moving_mean.numpy(), 0.99 * previous + 0.01 * batch_mean,
                               rtol=1e-5, atol=1e-5)


def test_save_and_reload_in_a_model(tmp_path):
    u0 = tf.keras.Input([5])
    u_mask = tf.keras.Input([3])
    model = tf.keras.Model([u0, u_mask], TaskAdaptiveMoE(
        num_tasks=2, num_task_experts=2, num_shared_experts=1, expert_units=4, num_layers=2,
        name="moe")((u0, u_mask)))
    set_random_weights(model.get_layer("moe"), np.random.default_rng(4))
    rng = np.random.default_rng(5)
    inputs = [rng.normal(size=[4, 5]), rng.normal(size=[4, 3])]
    path = str(tmp_path / "moe.keras")
    model.save(path)
    reloaded = tf.keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(inputs, verbose=0),
                               model.predict(inputs, verbose=0), rtol=1e-6, atol=1e-6)
    assert reloaded.get_layer("moe").get_config()["num_layers"] == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_task_experts=0), "num_task_experts must be an int >= 1, got 0"),
    (dict(num_shared_experts=-1), "got -1"),
    (dict(use_dynamic_weighting="yes"), "'yes'"),
], ids=["no_task_experts", "negative_shared", "non_bool_switch"])
def test_rejects_bad_hyperparameters(kwargs, message):
    arguments = dict(num_tasks=2, num_task_experts=1, num_shared_experts=1, expert_units=4,
                     num_layers=1)
    with pytest.raises(ValueError, match=message):
        TaskAdaptiveMoE(**{**arguments, **kwargs})
