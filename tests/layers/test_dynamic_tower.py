"""Tests for htgnn_tf.layers.dynamic_tower (dynamic towers, Eq. 18)."""
import numpy as np
import pytest
import tensorflow as tf

from htgnn_tf.layers.dynamic_tower import DynamicTower

TASKS, INPUT_DIM, HIDDEN, MASK_DIM, USERS = 3, 4, (5, 2), 3, 6


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def make_inputs(rng):
    x = rng.normal(size=[USERS, TASKS, INPUT_DIM]).astype(np.float32)
    u_mask = rng.normal(size=[USERS, MASK_DIM]).astype(np.float32)
    return x, u_mask


def make_tower(kind, dynamic, rng=None):
    tower = DynamicTower(num_tasks=TASKS, input_dim=INPUT_DIM, hidden_units=HIDDEN, kind=kind,
                         use_dynamic_towers=dynamic)
    tower(tuple(tf.constant(a) for a in make_inputs(np.random.default_rng(99))))
    if rng is not None:
        tower.set_weights([rng.normal(0.0, 0.6, w.shape).astype(np.float32)
                           for w in tower.get_weights()])
    return tower


def reference_dynamic_tower(tower, x, u_mask):
    """Eq. (18) user by user, task by task: W1, W2, W3 = Reshape(W_d u_mask + b_d)."""
    (h1, h2), d = HIDDEN, INPUT_DIM
    w_d = tower.weight_generator.kernel.numpy()  # [M, tasks * per_task]
    b_d = np.concatenate(
        [b.numpy().reshape(TASKS, -1) for b in tower.generated_biases], axis=1)  # [tasks, per_task]
    c1, c2, c3 = (b.numpy() for b in tower.layer_biases)
    out = np.zeros([USERS, TASKS])
    for u in range(USERS):
        generated = (u_mask[u] @ w_d).reshape(TASKS, -1) + b_d
        for t in range(TASKS):
            flat = generated[t]
            w1 = flat[:d * h1].reshape(d, h1)
            w2 = flat[d * h1:d * h1 + h1 * h2].reshape(h1, h2)
            w3 = flat[d * h1 + h1 * h2:].reshape(h2, 1)
            hidden = sigmoid(x[u, t] @ w1 + c1[t])
            hidden = sigmoid(hidden @ w2 + c2[t])
            out[u, t] = (hidden @ w3)[0] + c3[t, 0]
    if tower.kind == "classification":
        out = sigmoid(out)
    return out


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_dynamic_tower_matches_numpy_reference(kind):
    rng = np.random.default_rng(0)
    tower = make_tower(kind, dynamic=True, rng=rng)
    x, u_mask = make_inputs(rng)
    got = tower((tf.constant(x), tf.constant(u_mask))).numpy()
    np.testing.assert_allclose(got, reference_dynamic_tower(tower, x, u_mask),
                               rtol=1e-5, atol=1e-5)
    if kind == "classification":
        assert np.all((got > 0) & (got < 1))


def test_hand_set_generator_gives_exact_output():
    # One task, input [1, 2], hidden (1, 1); W_d maps the single u_mask entry m to every
    # generated entry, b_d = 0, c = 0. With m = 1: W1 = [[1], [1]], so h1 = sigmoid(3),
    # h2 = sigmoid(h1), y = h2.
    tower = DynamicTower(num_tasks=1, input_dim=2, hidden_units=(1, 1), kind="regression")
    x, u_mask = tf.constant([[[1.0, 2.0]]]), tf.constant([[1.0]])
    tower((x, u_mask))
    for weight in tower.generated_biases + tower.layer_biases:
        weight.assign(tf.zeros_like(weight))
    tower.weight_generator.kernel.assign(tf.ones([1, 4]))
    want = sigmoid(sigmoid(3.0))
    np.testing.assert_allclose(tower((x, u_mask)).numpy(), [[want]], rtol=1e-6)
    # m = 2 doubles every generated weight: h1 = sigmoid(6), h2 = sigmoid(2 h1), y = 2 h2.
    want = 2.0 * sigmoid(2.0 * sigmoid(6.0))
    np.testing.assert_allclose(tower((x, 2.0 * u_mask)).numpy(), [[want]], rtol=1e-6)


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_without_dynamic_towers_is_a_linear_head(kind):
    rng = np.random.default_rng(1)
    tower = make_tower(kind, dynamic=False, rng=rng)
    x, u_mask = make_inputs(rng)
    kernel, bias = tower.linear_kernel.numpy(), tower.linear_bias.numpy()
    want = np.stack([x[:, t] @ kernel[t] + bias[t] for t in range(TASKS)], axis=1)
    if kind == "classification":
        want = sigmoid(want)
    got = tower((tf.constant(x), tf.constant(u_mask))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        got, tower((tf.constant(x), tf.constant(u_mask + 5.0))).numpy())  # u_mask unused


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_initial_towers_are_static_glorot_mlps_in_a_sane_range(kind):
    tf.random.set_seed(2)
    tower = make_tower(kind, dynamic=True)
    x, u_mask = make_inputs(np.random.default_rng(2))
    got = tower((tf.constant(x), tf.constant(u_mask))).numpy()
    # W_d starts at zero: the same tower for every u_mask, equal to the numpy reference.
    np.testing.assert_array_equal(
        got, tower((tf.constant(x), tf.constant(u_mask * 3.0))).numpy())
    np.testing.assert_allclose(got, reference_dynamic_tower(tower, x, u_mask), atol=1e-6)
    # Glorot b_d, hidden sigmoids in (0, 1): |y| <= sum |W3| <= h2 * sqrt(6 / (h2 + 1)).
    if kind == "regression":
        assert np.abs(got).max() <= HIDDEN[1] * np.sqrt(6.0 / (HIDDEN[1] + 1))
    else:
        assert np.all((got > sigmoid(-2.9)) & (got < sigmoid(2.9)))


def test_save_and_reload_in_a_model(tmp_path):
    x = tf.keras.Input([TASKS, INPUT_DIM])
    u_mask = tf.keras.Input([MASK_DIM])
    tower = DynamicTower(num_tasks=TASKS, input_dim=INPUT_DIM, hidden_units=HIDDEN,
                         kind="classification", name="tower")
    model = tf.keras.Model([x, u_mask], tower((x, u_mask)))
    rng = np.random.default_rng(3)
    tower.set_weights([rng.normal(0.0, 0.6, w.shape).astype(np.float32)
                       for w in tower.get_weights()])
    inputs = list(make_inputs(rng))
    path = str(tmp_path / "tower.keras")
    model.save(path)
    reloaded = tf.keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(inputs, verbose=0),
                               model.predict(inputs, verbose=0), rtol=1e-6, atol=1e-6)
    config = reloaded.get_layer("tower").get_config()
    assert (config["hidden_units"], config["kind"], config["use_dynamic_towers"]) == (
        list(HIDDEN), "classification", True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="ranking"), "'ranking'"),
    (dict(hidden_units=(8,)), r"\(8,\)"),
    (dict(input_dim=0), "input_dim must be a positive int, got 0"),
], ids=["unknown_kind", "one_hidden_layer", "empty_input"])
def test_rejects_bad_hyperparameters(kwargs, message):
    arguments = dict(num_tasks=2, input_dim=4, hidden_units=(4, 2), kind="regression")
    with pytest.raises(ValueError, match=message):
        DynamicTower(**{**arguments, **kwargs})
