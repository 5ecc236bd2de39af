"""Tests for htgnn_tf.layers.sequence_encoder (Eq. 11 and u_mask)."""
import numpy as np
import pytest
import tensorflow as tf

from htgnn_tf.layers.sequence_encoder import ObservedLengthEmbedding, SequenceEncoder

NUM_TYPES, MAX_LEN, VOCAB, DIM, FFN = 3, 6, 9, 8, 12
LAYER_NORM_EPSILON = 1e-3  # tf.keras.layers.LayerNormalization default


def make_encoder(num_heads, seed=0):
    """An encoder whose every weight is set by hand from a numpy RNG."""
    encoder = SequenceEncoder(num_types=NUM_TYPES, max_len=MAX_LEN, vocab_size=VOCAB, dim=DIM,
                              num_heads=num_heads, ffn_units=FFN, dropout=0.1)
    encoder((tf.zeros([1, NUM_TYPES, MAX_LEN], tf.int64), tf.ones([1], tf.int64)))
    rng = np.random.default_rng(seed)
    encoder.set_weights([rng.normal(0.0, 0.5, w.shape).astype(np.float32)
                         for w in encoder.get_weights()])
    return encoder


def reference_attention(x, key_visible, wq, bq, wk, bk, wv, bv, num_heads):
    """softmax(Q K^T / sqrt(d_head) + M) V per head, M = -inf on hidden keys. x: [L, dim]."""
    length, dim = x.shape
    head_dim = dim // num_heads
    q, k, v = x @ wq + bq, x @ wk + bk, x @ wv + bv
    mask = np.where(key_visible, 0.0, -np.inf)  # [L]
    heads = []
    for h in range(num_heads):
        cols = slice(h * head_dim, (h + 1) * head_dim)
        logits = q[:, cols] @ k[:, cols].T / np.sqrt(head_dim) + mask[np.newaxis, :]
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        heads.append(weights @ v[:, cols])
    return np.concatenate(heads, axis=1)  # [L, dim]


def layer_norm(x, gamma, beta):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPSILON) * gamma + beta


def reference_encoder(encoder, seq_tokens, s):
    """Independent numpy forward pass of the encoder at inference. Returns [users, dim]."""
    w = lambda layer, name: getattr(layer, name).numpy()  # noqa: E731
    token_table = w(encoder.token_embedding, "embeddings")
    positions = w(encoder.position_embedding, "embeddings")
    types = w(encoder.type_embedding, "embeddings")
    cls = encoder.cls_embedding.numpy()
    outputs = []
    for user in range(seq_tokens.shape[0]):
        key_visible = np.arange(MAX_LEN + 1) <= s[user]  # [cls] and days 0..s-1
        cls_outputs = []
        for t in range(NUM_TYPES):
            tokens = seq_tokens[user, t].copy()
            tokens[s[user]:] = 0
            x = np.concatenate([cls[np.newaxis], token_table[tokens]], axis=0)
            x = x + positions + types[t]
            attended = reference_attention(
                x, key_visible,
                w(encoder.query, "kernel"), w(encoder.query, "bias"),
                w(encoder.key, "kernel"), w(encoder.key, "bias"),
                w(encoder.value, "kernel"), w(encoder.value, "bias"), encoder.num_heads)
            attended = attended @ w(encoder.attention_output, "kernel") + w(
                encoder.attention_output, "bias")
            x = layer_norm(x + attended, w(encoder.attention_norm, "gamma"),
                           w(encoder.attention_norm, "beta"))
            hidden = np.maximum(x @ w(encoder.ffn_hidden, "kernel") + w(encoder.ffn_hidden, "bias"), 0)
            ffn = hidden @ w(encoder.ffn_output, "kernel") + w(encoder.ffn_output, "bias")
            x = layer_norm(x + ffn, w(encoder.ffn_norm, "gamma"), w(encoder.ffn_norm, "beta"))
            cls_outputs.append(x[0])
        concat = np.concatenate(cls_outputs)
        outputs.append(concat @ w(encoder.aggregate, "kernel") + w(encoder.aggregate, "bias"))
    return np.stack(outputs)


def random_tokens(rng, num_users):
    return rng.integers(0, VOCAB, size=[num_users, NUM_TYPES, MAX_LEN]).astype(np.int64)


@pytest.mark.parametrize("num_heads", [1, 2, 4], ids=["one_head", "two_heads", "four_heads"])
def test_matches_numpy_reference(num_heads):
    encoder = make_encoder(num_heads)
    rng = np.random.default_rng(1)
    s = np.array([1, 3, 6, 2, 5], np.int64)
    seq_tokens = random_tokens(rng, len(s))
    got = encoder((tf.constant(seq_tokens), tf.constant(s)), training=False).numpy()
    np.testing.assert_allclose(got, reference_encoder(encoder, seq_tokens, s),
                               rtol=1e-4, atol=1e-4)


def test_tokens_beyond_s_do_not_change_the_output():
    encoder = make_encoder(num_heads=2)
    rng = np.random.default_rng(2)
    s = np.array([1, 2, 4, 5], np.int64)
    seq_tokens = random_tokens(rng, len(s))
    changed = seq_tokens.copy()
    beyond_s = np.broadcast_to(
        np.arange(MAX_LEN)[np.newaxis, np.newaxis, :] >= s[:, np.newaxis, np.newaxis],
        seq_tokens.shape)
    changed[beyond_s] = (changed[beyond_s] + 1 + rng.integers(0, VOCAB - 1, beyond_s.sum())) % VOCAB
    assert np.all(changed[beyond_s] != seq_tokens[beyond_s])

    base = encoder((tf.constant(seq_tokens), tf.constant(s))).numpy()
    masked_change = encoder((tf.constant(changed), tf.constant(s))).numpy()
    np.testing.assert_array_equal(masked_change, base)

    # A change inside the observed days does change every user's output.
    visible_change = seq_tokens.copy()
    visible_change[:, :, 0] = (visible_change[:, :, 0] + 1) % VOCAB
    moved = encoder((tf.constant(visible_change), tf.constant(s))).numpy()
    assert np.all(np.abs(moved - base).max(axis=1) > 1e-4)


def test_dropout_only_in_training():
    encoder = make_encoder(num_heads=2)
    inputs = (tf.constant(random_tokens(np.random.default_rng(3), 4)),
              tf.constant([6, 6, 6, 6], tf.int64))
    np.testing.assert_array_equal(encoder(inputs, training=False).numpy(),
                                  encoder(inputs, training=False).numpy())
    assert not np.allclose(encoder(inputs, training=True).numpy(),
                           encoder(inputs, training=False).numpy())


def test_observed_length_embedding_looks_up_s():
    layer = ObservedLengthEmbedding(max_len=4, dim=2)
    layer(tf.constant([1], tf.int64))
    table = np.arange(10, dtype=np.float32).reshape(5, 2)
    layer.set_weights([table])
    got = layer(tf.constant([1, 4, 2, 9], tf.int64)).numpy()  # 9 is clipped to W = 4
    np.testing.assert_array_equal(got, table[[1, 4, 2, 4]])


def test_save_and_reload_in_a_model(tmp_path):
    encoder = make_encoder(num_heads=2)
    seq_tokens = tf.keras.Input([NUM_TYPES, MAX_LEN], dtype=tf.int64)
    s = tf.keras.Input([], dtype=tf.int64)
    u_mask = ObservedLengthEmbedding(max_len=MAX_LEN, dim=4, name="u_mask")(s)
    model = tf.keras.Model([seq_tokens, s], [encoder((seq_tokens, s)), u_mask])
    inputs = [random_tokens(np.random.default_rng(4), 3), np.array([2, 6, 1], np.int64)]
    path = str(tmp_path / "encoder.keras")
    model.save(path)
    reloaded = tf.keras.models.load_model(path)
    for got, want in zip(reloaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    config = reloaded.get_layer(encoder.name).get_config()
    assert {key: config[key] for key in ("num_types", "max_len", "vocab_size", "dim",
                                         "num_heads", "ffn_units", "dropout")} == {
        "num_types": NUM_TYPES, "max_len": MAX_LEN, "vocab_size": VOCAB, "dim": DIM,
        "num_heads": 2, "ffn_units": FFN, "dropout": 0.1}


@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=10, num_heads=4), "dim=10"),
    (dict(dropout=1.5), "1.5"),
    (dict(max_len=0), "max_len must be a positive int, got 0"),
], ids=["heads_do_not_divide_dim", "dropout_out_of_range", "empty_window"])
def test_rejects_bad_hyperparameters(kwargs, message):
    arguments = dict(num_types=2, max_len=5, vocab_size=4, dim=8, num_heads=2, ffn_units=4)
    with pytest.raises(ValueError, match=message):
        SequenceEncoder(**{**arguments, **kwargs})
