"""Export: a SavedModel that a TensorFlow-only process loads and that answers like the
in-process Keras model; then the same model behind the gRPC server."""
import json
import os
import subprocess
import sys

import numpy as np

import htgnn_tf  # noqa: F401
from htgnn_tf import export, training
from tests.helpers import serialized_cohorts, tiny_data, trained  # noqa: F401  (fixtures)

LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
examples = [bytes.fromhex(h) for h in json.load(open(sys.argv[2]))]
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
outputs = signature(examples=tf.constant(examples, dtype=tf.string))
loaded = [m for m in sys.modules if m.split(".")[0] in
          ("tensorflow_gnn", "htgnn_tf", "beam_pipelines", "serving", "apache_beam")]
print(json.dumps({"modules": loaded,
                  "outputs": {k: (v.numpy().astype(str).tolist() if v.dtype == tf.string
                                  else v.numpy().tolist()) for k, v in outputs.items()}}))
"""


def test_exported_model_loads_with_tensorflow_only_and_matches(tmp_path, trained, tiny_data):
    model_dir = trained[0]
    base = str(tmp_path / "serving" / "htgnn")
    version_dir = export.export(model_dir, base)
    assert version_dir == os.path.join(base, "1") and export.next_version(base) == 2
    assert sorted(os.listdir(os.path.join(version_dir, "assets.extra"))) == sorted(
        export.EXTRA_FILES)
    examples = serialized_cohorts(tiny_data, "test")[:2]
    (tmp_path / "examples.json").write_text(json.dumps([e.hex() for e in examples]))
    (tmp_path / "loader.py").write_text(LOADER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(tmp_path / "loader.py"), version_dir,
                             str(tmp_path / "examples.json")], capture_output=True, text=True,
                            cwd=str(tmp_path), env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["modules"] == []
    _, _, serving_model = training.load_trained(model_dir)
    local = serving_model(np.array(examples, dtype=object), training=False)
    assert set(answer["outputs"]) == set(local)
    assert answer["outputs"]["user_id"] == local["user_id"].numpy().astype(str).tolist()
    for name, value in local.items():
        if name != "user_id":
            np.testing.assert_allclose(answer["outputs"][name], value.numpy(), rtol=1e-5,
                                       atol=1e-5)
