"""The REST API (/v1/models/...) over real HTTP, answered by the same core as gRPC."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.serving.saved_models import MODEL, examples


def rest(server, path, body=None):
    url = f"http://127.0.0.1:{server.rest_port}{path}"
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def b64(values: np.ndarray) -> list[dict]:
    return [{"b64": base64.b64encode(value).decode()} for value in values]


def test_rest_predict_row_and_columnar(server):
    xs = np.array([0.5, 4.0], dtype=np.float32)
    status, body = rest(server, f"/v1/models/{MODEL}:predict", {"instances": b64(examples(xs))})
    assert status == 200
    assert body == {"predictions": [{"user_id": "u0", "ltv_30": 2.0, "lt_30": 1.5},
                                    {"user_id": "u1", "ltv_30": 9.0, "lt_30": 5.0}]}
    status, body = rest(server, f"/v1/models/{MODEL}/versions/1:predict",
                        {"signature_name": "scale", "inputs": {"x": [2.0, -1.0]}})
    assert (status, body) == (200, {"outputs": [6.0, -3.0]})
    status, body = rest(server, f"/v1/models/{MODEL}:predict",
                        {"signature_name": "scale", "instances": [{"x": 1.0}, {"x": 2.0}]})
    assert (status, body) == (200, {"predictions": [3.0, 6.0]})


def test_rest_status_and_metadata(server):
    expected_status = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert rest(server, f"/v1/models/{MODEL}") == (200, expected_status)
    assert rest(server, f"/v1/models/{MODEL}/versions/1") == (200, expected_status)
    status, body = rest(server, f"/v1/models/{MODEL}/metadata")
    assert status == 200
    assert body["model_spec"]["name"] == MODEL and body["model_spec"]["version"] == "1"
    inputs = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert inputs["examples"]["dtype"] == "DT_STRING"


@pytest.mark.parametrize("path,body,http_code,message", [
    (f"/v1/models/nope:predict", {"instances": [{"b64": ""}]}, 404, "Servable not found"),
    (f"/v1/models/{MODEL}/versions/7", None, 404, "Could not find version 7"),
    (f"/v1/models/{MODEL}:predict", {"signature_name": "nope", "instances": [1]}, 400,
     'Serving signature key "nope" not found.'),
    (f"/v1/models/{MODEL}:predict", {"instances": [{"b64": base64.b64encode(b"garbage").decode()}]},
     400, "Could not parse example input"),
    (f"/v1/models/{MODEL}:predict", {"signature_name": "scale", "inputs": {"y": [1.0]}}, 400,
     "input size does not match signature"),
    (f"/v1/models/{MODEL}:predict", {"inputs": [], "instances": []}, 400, "Not both"),
    (f"/v1/models/{MODEL}:classify", {"examples": []}, 501, "not implemented"),
    ("/v2/anything", None, 400, "Malformed request"),
], ids=["unknown_model", "unknown_version", "unknown_signature", "undecodable", "wrong_input",
        "both_formats", "classify", "malformed_path"])
def test_rest_errors(server, path, body, http_code, message):
    status, reply = rest(server, path, body)
    assert status == http_code
    assert message in reply["error"]
