"""Small, quick settings for training the deep baselines in tests."""
from htgnn_tf.config import TrainConfig
from tests.helpers import SMALL_DIMS

FAST = dict(
    train_config=TrainConfig(epochs=10, batch_cohorts=2, learning_rate=3e-3,
                             early_stopping_patience=3),
    model_overrides={name: SMALL_DIMS[name] for name in ("features", "sequence", "mask", "moe")},
)
