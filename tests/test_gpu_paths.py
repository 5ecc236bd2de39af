"""The GPU paths (mixed precision, XLA, tf.distribute) run correctly on the CPU."""
import dataclasses

import numpy as np
import pytest

import htgnn_tf  # noqa: F401
import tensorflow as tf

from htgnn_tf import model as model_lib
from htgnn_tf import training
from htgnn_tf.config import TrainConfig
from tests.helpers import parse_batch, serialized_cohorts, tiny_config, tiny_data  # noqa: F401


def _outputs(layers, config, data_dir, examples):
    model = model_lib.build_training_model(config, training.read_schema(data_dir), layers)
    return model(parse_batch(data_dir, examples), training=False)


def test_xla_compiled_blocks_give_the_same_outputs(tiny_data):
    examples = serialized_cohorts(tiny_data, "test")[:2]
    config = tiny_config(tiny_data)
    plain = model_lib.HTGNNLayers(config)
    expected = _outputs(plain, config, tiny_data, examples)
    xla_config = dataclasses.replace(config, xla=True)
    compiled = model_lib.HTGNNLayers(xla_config)
    _outputs(compiled, xla_config, tiny_data, examples)  # builds the variables
    for name in ("features", "observed_days", "length", "moe", "observed", "readout"):
        getattr(compiled, name).set_weights(getattr(plain, name).get_weights())
    for a, b in zip(compiled.hypergraph, plain.hypergraph):
        a.set_weights(b.get_weights())
    for name in ("sequence", "regression", "classification"):
        wrapper = getattr(compiled, name)
        assert isinstance(wrapper, model_lib.JitCompiled)
        wrapper.layer.set_weights(getattr(plain, name).get_weights())
    got = _outputs(compiled, xla_config, tiny_data, examples)
    for name in config.task_names:
        np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("flags", [
    dict(mixed_precision=True), dict(strategy="mirrored"), dict(xla=True)],
    ids=["mixed_precision", "mirrored", "xla"])
def test_training_runs_with_gpu_flags_on_cpu(tiny_data, tmp_path, flags):
    model_config = tiny_config(tiny_data, xla=flags.get("xla", False))
    train_config = TrainConfig(epochs=1, batch_cohorts=2, **flags)
    try:
        _, history = training.train(tiny_data, str(tmp_path / "model"), model_config,
                                    train_config, verbose=0, max_steps_per_epoch=2)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    # The saved weights reload into a model built from the saved config, outside any
    # strategy and policy.
    _, model, _ = training.load_trained(str(tmp_path / "model"))
    outputs = model(parse_batch(tiny_data, serialized_cohorts(tiny_data, "test")[:1]),
                    training=False)
    assert np.isfinite(history["loss"]).all()
    for name in model_config.task_names:
        assert outputs[name].dtype == tf.float32
        assert np.isfinite(outputs[name].numpy()).all() and (outputs[name].numpy() >= 0).all()
