"""The gRPC server over real gRPC on loopback with real SavedModels (see saved_models.py).

Status codes, output_filter, metadata and status answers, version roll-over under load,
16 concurrent clients, the message size limit, and the process entry point with SIGTERM.
Expected values are worked out here from the models' closed forms.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.tools import saved_model_utils
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, inference_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving.client import PredictClient, VersionStatus
from serving.config import ServerConfig
from serving.server import ModelServer, build_arg_parser, config_from_args
from tests.serving.saved_models import MODEL, examples, write_version

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as open_channel:
        yield open_channel


@pytest.fixture(scope="module")
def prediction_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(inputs: dict, name=MODEL, signature_name="", version=None, output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    return request


# -- Predict --------------------------------------------------------------------------
def test_response_echoes_resolved_model_spec(prediction_stub):
    response = prediction_stub.Predict(predict_request({"examples": examples([1.0])}), timeout=10)
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"  # empty -> serving_default
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["ltv_30"]), [3.0])


def test_output_filter(server, prediction_stub):
    xs = np.array([3.0, 4.0], dtype=np.float32)
    with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
        outputs = client.predict({"examples": examples(xs)}, output_filter=["ltv_30"])
    assert list(outputs) == ["ltv_30"]
    np.testing.assert_array_equal(outputs["ltv_30"], [7.0, 9.0])
    response = prediction_stub.Predict(
        predict_request({"examples": examples(xs)}, output_filter=["user_id", "lt_30"]), timeout=10)
    assert sorted(response.outputs) == ["lt_30", "user_id"]
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["lt_30"]), [4.0, 5.0])


# -- status codes ---------------------------------------------------------------------
def _no_model_spec():
    request = predict_pb2.PredictRequest()
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples([1.0])))
    return request


def _version_label():
    request = predict_request({"examples": examples([1.0])})
    request.model_spec.version_label = "stable"
    return request


def _negative_dimension():
    request = predict_request({})
    proto = request.inputs["examples"]
    proto.dtype = tf.string.as_datatype_enum
    proto.tensor_shape.dim.add().size = -2
    proto.string_val.extend([b"a", b"b"])
    return request


def _truncated_tensor_content():
    request = predict_request({}, signature_name="scale")
    proto = request.inputs["x"]
    proto.dtype = tf.float32.as_datatype_enum
    proto.tensor_shape.dim.add().size = 3
    proto.tensor_content = b"12345"  # 5 bytes cannot hold 3 float32 values
    return request


PREDICT_ERRORS = {
    "unknown_model": (lambda: predict_request({"examples": examples([1.0])}, name="nope"),
                      grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    "unknown_version": (lambda: predict_request({"examples": examples([1.0])}, version=7),
                        grpc.StatusCode.NOT_FOUND, f"Specific({MODEL}, 7)"),
    "version_label": (_version_label, grpc.StatusCode.INVALID_ARGUMENT,
                      "Unrecognized servable version label: stable"),
    "no_model_spec": (_no_model_spec, grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    "unknown_signature": (lambda: predict_request({"examples": examples([1.0])}, signature_name="nope"),
                          grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
    "missing_input": (lambda: predict_request({}), grpc.StatusCode.INVALID_ARGUMENT,
                      "Missing but required: {examples}"),
    "extra_input": (lambda: predict_request({"examples": examples([1.0]),
                                             "obs_days": np.array([7], dtype=np.int64)}),
                    grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {obs_days}"),
    "wrong_dtype": (lambda: predict_request({"examples": np.array([1.0], dtype=np.float32)}),
                    grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[examples] to be string but float32"),
    "wrong_rank": (lambda: predict_request({"examples": examples([1.0, 2.0]).reshape(1, 2)}),
                   grpc.StatusCode.INVALID_ARGUMENT, "has shape [1, 2]"),
    "negative_dimension": (_negative_dimension, grpc.StatusCode.INVALID_ARGUMENT,
                           "Cannot decode input tensor examples"),
    "truncated_tensor_content": (_truncated_tensor_content, grpc.StatusCode.INVALID_ARGUMENT,
                                 "Cannot decode input tensor x"),
    "undecodable_examples": (
        lambda: predict_request({"examples": np.array([b"not a proto"], dtype=object)}),
        grpc.StatusCode.INVALID_ARGUMENT, "Could not parse example input, value: 'not a proto'"),
    "undecodable_binary_examples": (
        lambda: predict_request({"examples": np.array([b"\xff\xfe"], dtype=object)}),
        grpc.StatusCode.INVALID_ARGUMENT, "serialized tf.train.Example that do not parse"),
    "missing_feature": (
        lambda: predict_request({"examples": np.array([tf.train.Example().SerializeToString()],
                                                      dtype=object)}),
        grpc.StatusCode.INVALID_ARGUMENT, "is required but could not be found"),
    "unknown_output_filter": (
        lambda: predict_request({"examples": examples([1.0])}, output_filter=["ltv_999"]),
        grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found in signature: ltv_999"),
    "duplicate_output_filter": (
        lambda: predict_request({"examples": examples([1.0])}, output_filter=["ltv_30", "ltv_30"]),
        grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias: ltv_30"),
}


@pytest.mark.parametrize("make_request,code,message", list(PREDICT_ERRORS.values()),
                         ids=list(PREDICT_ERRORS))
def test_predict_errors(prediction_stub, make_request, code, message):
    with pytest.raises(grpc.RpcError) as raised:
        prediction_stub.Predict(make_request(), timeout=10)
    assert raised.value.code() == code
    assert message in raised.value.details()


def test_unimplemented_methods(prediction_stub, model_stub):
    calls = [(prediction_stub.Classify, classification_pb2.ClassificationRequest()),
             (prediction_stub.Regress, regression_pb2.RegressionRequest()),
             (prediction_stub.MultiInference, inference_pb2.MultiInferenceRequest()),
             (model_stub.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest())]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as raised:
            method(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "not implemented" in raised.value.details()


def test_server_keeps_serving_after_bad_requests(prediction_stub):
    for make_request, _, _ in PREDICT_ERRORS.values():
        with pytest.raises(grpc.RpcError):
            prediction_stub.Predict(make_request(), timeout=10)
    response = prediction_stub.Predict(predict_request({"examples": examples([5.0])}), timeout=10)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["ltv_30"]), [11.0])


# -- metadata and status --------------------------------------------------------------
def test_metadata_matches_saved_model(server, base_path, prediction_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = prediction_stub.GetModelMetadata(request, timeout=10)
    assert response.model_spec.name == MODEL and response.model_spec.version.value == 1
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_def_map)
    reference = saved_model_utils.get_meta_graph_def(os.path.join(base_path, "1"), "serve")
    assert dict(signature_def_map.signature_def) == dict(reference.signature_def)

    with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
        metadata = client.metadata()
    assert (metadata.name, metadata.version) == (MODEL, 1)
    default = metadata.signatures["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs == {"examples": tf.TensorSpec([None], tf.string, name="examples")}
    assert {alias: (spec.dtype, spec.shape.as_list()) for alias, spec in default.outputs.items()} == {
        "user_id": (tf.string, [None]), "ltv_30": (tf.float32, [None]), "lt_30": (tf.float32, [None])}


@pytest.mark.parametrize("fields,message", [
    ([], "must specify at least one metadata_field"),
    (["signature_def", "tags"], "Metadata field tags is not supported")],
    ids=["no_field", "unsupported_field"])
def test_metadata_errors(prediction_stub, fields, message):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = MODEL
    with pytest.raises(grpc.RpcError) as raised:
        prediction_stub.GetModelMetadata(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_status(server, model_stub):
    with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
        assert client.status() == [VersionStatus(version=1, state="AVAILABLE", error_code="OK",
                                                 error_message="")]
    for name, version, expected in [("nope", None, "Could not find any versions of model nope"),
                                    (MODEL, 9, f"Could not find version 9 of model {MODEL}")]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        with pytest.raises(grpc.RpcError) as raised:
            model_stub.GetModelStatus(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert expected in raised.value.details()


# -- concurrency ----------------------------------------------------------------------
def test_sixteen_concurrent_clients(server):
    failures: list[BaseException] = []
    mismatches: list[int] = []

    def run(worker: int):
        try:
            with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
                for call in range(8):
                    xs = np.arange(5, dtype=np.float32) + 100.0 * worker + call
                    outputs = client.predict({"examples": examples(xs, prefix=f"w{worker}-")})
                    if not (np.array_equal(outputs["ltv_30"], 2.0 * xs + 1.0)
                            and list(outputs["user_id"]) == [f"w{worker}-{i}".encode() for i in range(5)]):
                        mismatches.append(worker)
        except BaseException as error:  # collected and asserted below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [] and mismatches == []


# -- versions -------------------------------------------------------------------------
def test_new_version_rolls_over_without_failed_requests(tmp_path):
    base = str(tmp_path)
    write_version(base, 1)
    config = ServerConfig(model_name=MODEL, model_base_path=base, grpc_port=0, rest_port=None,
                          file_system_poll_wait_seconds=0.1)
    answered_versions: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    xs = np.array([1.0, 2.0], dtype=np.float32)

    with ModelServer(config) as server:
        def loop():
            with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
                while not stop.is_set():
                    try:
                        ltv = client.predict({"examples": examples(xs)}, output_filter=["ltv_30"])["ltv_30"]
                        offset = ltv - 2.0 * xs  # the version, by construction of the model
                        assert offset[0] == offset[1] and offset[0] in (1.0, 2.0), ltv
                        answered_versions.append(int(offset[0]))
                    except BaseException as error:  # collected and asserted below
                        failures.append(error)

        looper = threading.Thread(target=loop)
        looper.start()
        deadline = time.monotonic() + 30
        while not answered_versions and time.monotonic() < deadline:
            time.sleep(0.05)
        write_version(base, 2)
        while (not answered_versions or answered_versions[-1] != 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        count_at_switch = len(answered_versions)
        while len(answered_versions) < count_at_switch + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        looper.join(timeout=30)

        assert failures == []
        switch = answered_versions.index(2)
        assert switch > 0  # version 1 answered first, then version 2, nothing failed between
        assert set(answered_versions[:switch]) == {1} and set(answered_versions[switch:]) == {2}
        with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
            assert [(s.version, s.state) for s in client.status()] == [(2, "AVAILABLE"), (1, "END")]
        with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL, version=1) as pinned:
            with pytest.raises(grpc.RpcError) as raised:
                pinned.predict({"examples": examples(xs)})
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND

        # A broken version 3 fails to load; version 2 keeps answering.
        os.makedirs(os.path.join(base, "3"))
        with open(os.path.join(base, "3", "saved_model.pb"), "wb") as f:
            f.write(b"not a SavedModel")
        with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
            deadline = time.monotonic() + 30
            while client.status()[0].version != 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            while client.status()[0].state == "LOADING" and time.monotonic() < deadline:
                time.sleep(0.05)
            broken = client.status()[0]
            assert (broken.version, broken.state) == (3, "END") and broken.error_code != "OK"
            assert broken.error_message
            np.testing.assert_array_equal(
                client.predict({"examples": examples(xs)})["ltv_30"], 2.0 * xs + 2.0)


# -- process, flags, config -----------------------------------------------------------
# The server process must need TensorFlow only (no TF-GNN, no project model code, no
# Beam); main() then reports what got imported. (`import tensorflow` itself loads a Keras.)
SERVER_SCRIPT = """
import sys
from serving.server import main
status = main(sys.argv[1:])
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow_gnn", "htgnn_tf", "apache_beam"))
print("FORBIDDEN_MODULES", forbidden, file=sys.stderr, flush=True)
sys.exit(status)
"""


def test_main_serves_and_stops_on_sigterm(base_path):
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, f"--model_name={MODEL}",
         f"--model_base_path={base_path}", "--port=0", "--rest_api_port=0"],
        cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    try:
        port = None
        for line in process.stderr:
            if "Running gRPC ModelServer at 127.0.0.1:" in line:
                port = int(line.rsplit(":", 1)[1])
                break
        assert port is not None
        with PredictClient(f"127.0.0.1:{port}", MODEL) as client:
            np.testing.assert_array_equal(client.predict({"examples": examples([2.0])})["ltv_30"], [5.0])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        rest_of_log = process.stderr.read()
        assert "FORBIDDEN_MODULES []" in rest_of_log, rest_of_log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_max_message_size_is_enforced(base_path):
    config = ServerConfig(model_name=MODEL, model_base_path=base_path, grpc_port=0, rest_port=None,
                          max_message_bytes=4096)
    with ModelServer(config) as server, PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
        small = np.array([1.0, 2.0], dtype=np.float32)
        np.testing.assert_array_equal(client.predict({"examples": examples(small)})["ltv_30"], [3.0, 5.0])
        with pytest.raises(grpc.RpcError) as raised:
            client.predict({"examples": examples(np.zeros(500, dtype=np.float32))})  # ~20 kB
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_every_flag_is_explained_and_maps_to_config(base_path):
    parser = build_arg_parser()
    for action in parser._actions:
        assert action.help, action.dest
    config = config_from_args(parser.parse_args(
        [f"--model_name={MODEL}", f"--model_base_path={base_path}", "--host=0.0.0.0", "--port=9000",
         "--rest_api_port=0", "--grpc_max_threads=3", "--max_message_bytes=4096",
         "--file_system_poll_wait_seconds=2.5", "--shutdown_grace_seconds=0"]))
    assert config == ServerConfig(model_name=MODEL, model_base_path=base_path, host="0.0.0.0",
                                  grpc_port=9000, rest_port=None, grpc_max_threads=3,
                                  max_message_bytes=4096, file_system_poll_wait_seconds=2.5,
                                  shutdown_grace_seconds=0.0)




def test_taken_ports_fail_start_cleanly(server, base_path):
    taken = [({"grpc_port": server.grpc_port, "rest_port": None}, "cannot bind gRPC"),
             ({"grpc_port": 0, "rest_port": server.rest_port}, "cannot bind REST")]
    for ports, message in taken:
        second = ModelServer(ServerConfig(model_name=MODEL, model_base_path=base_path, **ports))
        with pytest.raises(OSError, match=message):
            second.start()
        with pytest.raises(Exception, match="Servable not found"):  # the model was unloaded again
            second.manager.get()
    with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:  # the first one is intact
        np.testing.assert_array_equal(client.predict({"examples": examples([0.0])})["ltv_30"], [1.0])
