"""Tests of FeatureEmbedding (Eq. 1-3)."""
import numpy as np
import pytest
import tensorflow as tf

from htgnn_tf.layers.feature_embedding import FeatureEmbedding

DIM = 3


def _hand_set_table(layer, total_rows):
    """Table row r = [r, r + 0.25, r + 0.5], so every looked-up row is recognisable."""
    table = np.arange(total_rows, dtype=np.float32)[:, None] + np.array([0.0, 0.25, 0.5])
    layer.set_weights([table])
    return table


def _expected(table, vocab_sizes, num_bins, categorical_ids, stat_bins):
    """Independent reference: per user, per feature, the row of its (clipped) id."""
    rows = []
    for cat_row, bin_row in zip(categorical_ids, stat_bins):
        pieces, offset = [], 0
        for size, value in zip(vocab_sizes, cat_row):
            pieces.append(table[offset + (value if 0 <= value < size else 0)])
            offset += size
        for size, value in zip(num_bins, bin_row):
            pieces.append(table[offset + min(max(value, 0), size - 1)])
            offset += size
        rows.append(np.concatenate(pieces))
    return np.array(rows)


@pytest.mark.parametrize("vocab_sizes,num_bins", [
    ([4, 2, 5], [3, 6]),
    ([], [3, 6]),
    ([4, 2], []),
], ids=["both", "no_categorical", "no_statistical"])
def test_lookup_with_clipping_matches_reference(vocab_sizes, num_bins):
    categorical_ids = np.array([[3, 1, 4], [0, 0, 0], [-1, 2, 9], [4, -7, 2]])[:, :len(vocab_sizes)]
    stat_bins = np.array([[2, 5], [0, 0], [-3, 6], [3, 99]])[:, :len(num_bins)]
    layer = FeatureEmbedding(categorical_vocab_sizes=vocab_sizes,
                             statistical_num_bins=num_bins, embedding_dim=DIM)
    layer((tf.constant(categorical_ids, tf.int64), tf.constant(stat_bins, tf.int64)))
    table = _hand_set_table(layer, sum(vocab_sizes) + sum(num_bins))
    output = layer((tf.constant(categorical_ids, tf.int64),
                    tf.constant(stat_bins, tf.int64))).numpy()
    assert output.shape == (4, (len(vocab_sizes) + len(num_bins)) * DIM)
    np.testing.assert_array_equal(
        output, _expected(table, vocab_sizes, num_bins, categorical_ids, stat_bins))


def test_clipping_rules_by_hand():
    layer = FeatureEmbedding(categorical_vocab_sizes=[3], statistical_num_bins=[4],
                             embedding_dim=1)
    layer((tf.zeros([1, 1], tf.int64), tf.zeros([1, 1], tf.int64)))
    layer.set_weights([np.array([[10.0], [11.0], [12.0], [20.0], [21.0], [22.0], [23.0]])])
    output = layer((tf.constant([[-1], [2], [3]]), tf.constant([[-5], [2], [4]]))).numpy()
    # categorical: -1 -> OOV 0, 2 -> 2, 3 -> OOV 0; bins: -5 -> 0, 2 -> 2, 4 -> last (3)
    np.testing.assert_array_equal(output, [[10.0, 20.0], [12.0, 22.0], [10.0, 23.0]])


def test_config_round_trip_in_functional_model(tmp_path):
    categorical = tf.keras.Input(shape=[2], dtype=tf.int64)
    stat = tf.keras.Input(shape=[1], dtype=tf.int64)
    outputs = FeatureEmbedding(categorical_vocab_sizes=[3, 4], statistical_num_bins=[5],
                               embedding_dim=2, name="embed")((categorical, stat))
    model = tf.keras.Model([categorical, stat], outputs)
    ids = (np.array([[1, 3], [2, 0]]), np.array([[4], [1]]))
    model.save(tmp_path / "model.keras")
    reloaded = tf.keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(reloaded(ids).numpy(), model(ids).numpy())
    config = reloaded.get_layer("embed").get_config()
    assert (config["categorical_vocab_sizes"], config["statistical_num_bins"],
            config["embedding_dim"]) == ([3, 4], [5], 2)


@pytest.mark.parametrize("kwargs,bad", [
    (dict(categorical_vocab_sizes=[3, 0], statistical_num_bins=[2], embedding_dim=2), "0"),
    (dict(categorical_vocab_sizes=[3], statistical_num_bins=[2.5], embedding_dim=2), "2.5"),
    (dict(categorical_vocab_sizes="abc", statistical_num_bins=[2], embedding_dim=2), "abc"),
    (dict(categorical_vocab_sizes=[], statistical_num_bins=[], embedding_dim=2), r"\[\]"),
    (dict(categorical_vocab_sizes=[3], statistical_num_bins=[2], embedding_dim=-1), "-1"),
], ids=["zero_vocab", "float_bins", "string_sizes", "no_features", "negative_dim"])
def test_invalid_arguments_are_rejected(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        FeatureEmbedding(**kwargs)
