"""Random-length masks: the number of observed days ``s`` seen by the model.

Implements the random-length masks of Sec. IV-C of the HT-GNN paper: during training
the model sees only the first ``s`` days of each user's behaviour sequences, with ``s``
drawn anew for every step, so one model serves users at any age since acquisition.

The sampled ``s`` is shared by the sequence encoder (which tokens are visible), the
``u_mask`` embedding (the gates and tower weights of Eq. 13 and 18) and the
classification target (activity after day ``s``), so it is a layer of its own whose
output the model wires to all three.

Decisions where the paper is silent:

* ``s`` is uniform on ``{1, ..., obs_days}`` per user, independently: a user can never
  be shown more days than were actually observed, and every available length is
  equally likely.
* Sampling uses a seeded stateful TF op (``tf.random.uniform`` with an op seed), not a
  ``tf.random.Generator``: the layer has no variables and its config is just the seed.
"""
from __future__ import annotations

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="htgnn")
class RandomObservedDays(tf.keras.layers.Layer):
    """Draws the observed length ``s`` for each user in training; identity otherwise.

    Call arguments:
      obs_days: int tensor ``[users]``, the days actually observed (``1..W``).
      training: in training, ``s ~ Uniform{1, ..., obs_days}`` per user; otherwise
        (inference, evaluation, ``None``) ``s = obs_days``.

    Returns:
      ``s``: int64 tensor ``[users]``.

    Init arguments:
      seed: optional int, the op seed of the sampler (reproducible draws with a fixed
        global seed).
    """

    def __init__(self, *, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed

    def call(self, obs_days, training=None):
        obs_days = tf.cast(obs_days, tf.int64)  # [users]
        if not training:
            return obs_days
        uniform = tf.random.uniform(
            tf.shape(obs_days), dtype=tf.float64, seed=self.seed)  # [users], in [0, 1)
        sampled = tf.cast(
            tf.floor(uniform * tf.cast(obs_days, tf.float64)), tf.int64) + 1  # [users]
        return tf.clip_by_value(sampled, 1, tf.maximum(obs_days, 1))  # [users]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
