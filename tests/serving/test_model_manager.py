"""ModelManager: which directories count as versions, load / swap / unload, and states."""
from __future__ import annotations

import os
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2

from serving.errors import ServingError
from serving.model_manager import ModelManager, list_versions
from tests.serving.saved_models import MODEL, examples, write_version

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def ltv_30(loaded, xs) -> np.ndarray:
    outputs = loaded.signatures["serving_default"](examples=tf.constant(examples(xs)))
    return outputs["ltv_30"].numpy()


def test_list_versions_counts_only_complete_numbered_directories(tmp_path):
    for name in ["3", "10", "2"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "7").mkdir()  # no saved_model.pb yet: still being written
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "11.tmp").mkdir()
    assert list_versions(str(tmp_path)) == [2, 3, 10]  # numeric order, not string order


def test_serves_highest_then_unloads_when_versions_disappear(tmp_path):
    base = str(tmp_path)
    write_version(base, 1)
    write_version(base, 2)
    manager = ModelManager(name=MODEL, base_path=base, poll_wait_seconds=60)
    manager.poll_once()
    served = manager.get()
    assert served.version == 2 and manager.get(2) is served
    np.testing.assert_array_equal(ltv_30(served, [1.0, 5.0]), [4.0, 12.0])
    with pytest.raises(ServingError) as raised:
        manager.get(1)
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert raised.value.message == f"Servable not found for request: Specific({MODEL}, 1)"

    shutil.rmtree(os.path.join(base, "2"))  # roll back: version 1 is the highest again
    manager.poll_once()
    assert manager.get().version == 1
    np.testing.assert_array_equal(ltv_30(manager.get(), [1.0]), [3.0])
    np.testing.assert_array_equal(ltv_30(served, [1.0]), [4.0])  # a holder of v2 still answers
    assert {v: s.state for v, s in manager.version_states().items()} == {2: END, 1: AVAILABLE}

    shutil.rmtree(os.path.join(base, "1"))
    manager.poll_once()
    with pytest.raises(ServingError) as raised:
        manager.get()
    assert raised.value.message == f"Servable not found for request: Latest({MODEL})"
    assert list(manager.version_states()) == [2, 1]  # highest first
    assert all(state.state == END for state in manager.version_states().values())


def test_failed_load_is_retried_only_after_the_file_changes(tmp_path):
    base = str(tmp_path)
    write_version(base, 1)
    manager = ModelManager(name=MODEL, base_path=base, poll_wait_seconds=60)
    manager.poll_once()
    os.makedirs(os.path.join(base, "2"))
    broken = os.path.join(base, "2", "saved_model.pb")
    with open(broken, "wb") as f:
        f.write(b"\x00 not a SavedModel")
    manager.poll_once()
    state = manager.version_states()[2]
    assert state.state == END and state.error_code != grpc.StatusCode.OK and state.error_message
    assert manager.get().version == 1

    shutil.rmtree(os.path.join(base, "2"))
    os.rename(write_version(base, 3), os.path.join(base, "2"))  # a good export replaces it
    manager.poll_once()
    assert manager.get().version == 2
    np.testing.assert_array_equal(ltv_30(manager.get(), [0.0]), [3.0])  # the model built as v3


@pytest.mark.parametrize("kwargs,message", [
    ({"base_path": "/no/such/dir"}, "'/no/such/dir'"),
    ({"poll_wait_seconds": 0}, "got 0"),
], ids=["missing_base", "poll"])
def test_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelManager(**{"name": MODEL, "base_path": str(tmp_path), **kwargs})
