"""TF Serving's REST API (``/v1/models/...``) on the standard library's HTTP server.

Routes, as in ``tensorflow_model_server`` (http_rest_api_handler.cc):

* ``GET  /v1/models/<name>[/versions/<v>]``           -> GetModelStatus as JSON;
* ``GET  /v1/models/<name>[/versions/<v>]/metadata``  -> GetModelMetadata as JSON;
* ``POST /v1/models/<name>[/versions/<v>]:predict``   -> Predict.

Predict bodies use TF Serving's JSON formats: row format ``{"instances": [...]}``
answered as ``{"predictions": [...]}``, or columnar ``{"inputs": ...}`` answered as
``{"outputs": ...}``; optional ``"signature_name"``. Binary strings (serialized
``tf.train.Example``) travel as ``{"b64": "<base64>"}``. A request is turned into a
``PredictRequest`` proto and answered by the same ``ServerCore`` as gRPC, so the two
APIs cannot drift apart. Errors are ``{"error": "<message>"}`` with TF Serving's HTTP
mapping of the status code (NOT_FOUND -> 404, INVALID_ARGUMENT and FAILED_PRECONDITION
-> 400, UNIMPLEMENTED -> 501, INTERNAL -> 500).

Departure: string outputs are written as text when they are valid UTF-8 and their alias
does not end in ``_bytes``, otherwise as ``{"b64": ...}`` (TF Serving writes raw bytes
for the former, which is invalid JSON for binary data).
"""
from __future__ import annotations

import base64
import http.server
import json
import logging
import re

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from serving.errors import ServingError
from serving.protocol import SIGNATURE_DEF_FIELD, ServerCore

_LOG = logging.getLogger(__name__)

_PREDICT_PATH = re.compile(r"(?i)/v1/models/([^/:]+)(?:/versions/(\d+))?:(classify|regress|predict)")
_MODEL_PATH = re.compile(r"(?i)/v1/models/([^/:]+)(?:/versions/(\d+))?(/metadata)?")

_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def http_status(code: grpc.StatusCode) -> int:
    """TF Serving's HTTP status for a gRPC status code (500 for the rest)."""
    return _HTTP_STATUS.get(code, 500)


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _decode_strings(value):
    """Nested JSON values -> nested bytes (``{"b64": ...}`` decoded, text UTF-8 encoded)."""
    if isinstance(value, list):
        return [_decode_strings(item) for item in value]
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as error:
            raise _invalid(f"Invalid base64 value: {error}") from error
    if isinstance(value, str):
        return value.encode("utf-8")
    raise _invalid(f"Expected a string or {{\"b64\": ...}} for a string input, got {value!r}")


def _json_to_tensor_proto(alias: str, value, dtype: tf.DType | None):
    try:
        if dtype == tf.string:
            array = np.array(_decode_strings(value), dtype=object)
        elif dtype is not None:
            array = np.asarray(value, dtype=dtype.as_numpy_dtype)
        else:  # an input the signature does not have: the core reports it by name
            array = np.asarray(value)
        return tf.make_tensor_proto(array)
    except ServingError:
        raise
    except (ValueError, TypeError) as error:
        raise _invalid(f"Cannot convert JSON input {alias} to a tensor: {error}") from error


def predict_request_from_json(core: ServerCore, name: str, version: str | None,
                              body: bytes) -> tuple[predict_pb2.PredictRequest, bool]:
    """(PredictRequest, row_format) from a REST predict body."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise _invalid(f"JSON Parse error: {error}") from error
    if not isinstance(payload, dict):
        raise _invalid("The request body must be a JSON object")
    signature_name = payload.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise _invalid("'signature_name' key must be a string value.")
    if ("instances" in payload) == ("inputs" in payload):
        raise _invalid("Missing 'inputs' or 'instances' key" if "inputs" not in payload
                       else "Not both 'inputs' and 'instances' can be specified")

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.model_spec.signature_name = signature_name
    _, _, signature_def = core.resolve_signature(request.model_spec)
    dtypes = {alias: tf.as_dtype(info.dtype) for alias, info in signature_def.inputs.items()}
    single_alias = next(iter(dtypes)) if len(dtypes) == 1 else None

    row_format = "instances" in payload
    if row_format:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise _invalid("'instances' must be a non-empty JSON list")
        if all(isinstance(item, dict) and not _is_b64(item) for item in instances):
            keys = set(instances[0])
            if any(set(item) != keys for item in instances):
                raise _invalid("Every instance must have the same named inputs")
            columns = {alias: [item[alias] for item in instances] for alias in keys}
        elif single_alias is not None:
            columns = {single_alias: instances}
        else:
            raise _invalid(f"The signature has inputs {sorted(dtypes)}: each instance must be a "
                           "JSON object naming them")
    else:
        inputs = payload["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            columns = inputs
        elif single_alias is not None:
            columns = {single_alias: inputs}
        else:
            raise _invalid(f"The signature has inputs {sorted(dtypes)}: 'inputs' must be a JSON "
                           "object naming them")
    for alias, value in columns.items():
        request.inputs[alias].CopyFrom(_json_to_tensor_proto(alias, value, dtypes.get(alias)))
    return request, row_format


def _to_json_value(alias: str, array: np.ndarray):
    if array.dtype != object:
        return array.tolist()

    def encode(item):
        if isinstance(item, list):
            return [encode(x) for x in item]
        if not alias.endswith("_bytes"):
            try:
                return item.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(item).decode("ascii")}

    return encode(array.tolist())


def predict_response_to_json(response: predict_pb2.PredictResponse, row_format: bool) -> dict:
    """TF Serving's JSON for a PredictResponse: ``predictions`` (rows) or ``outputs``."""
    arrays = {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}
    if not row_format:
        if len(arrays) == 1:
            (alias, array), = arrays.items()
            return {"outputs": _to_json_value(alias, array)}
        return {"outputs": {alias: _to_json_value(alias, a) for alias, a in arrays.items()}}
    batch_sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if len(batch_sizes) != 1 or None in batch_sizes:
        raise _invalid("All output tensors must have the same 0th dimension for the row format "
                       "('instances'); use the columnar format ('inputs')")
    values = {alias: _to_json_value(alias, array) for alias, array in arrays.items()}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    rows = batch_sizes.pop()
    return {"predictions": [{alias: column[row] for alias, column in values.items()}
                            for row in range(rows)]}


def _message_to_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


class _RestHandler(http.server.BaseHTTPRequestHandler):
    """One HTTP request; ``core`` is set on the subclass ``make_rest_server`` builds."""

    core: ServerCore
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self, answer) -> None:
        try:
            self._reply(200, answer())
        except ServingError as error:
            self._reply(http_status(error.code), {"error": error.message})
        except Exception as error:  # a bug must fail the request, never the server
            _LOG.exception("Internal error on %s %s", self.command, self.path)
            self._reply(500, {"error": f"{type(error).__name__}: {error}"})

    def do_GET(self):
        self._serve(self._get)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._serve(lambda: self._post(body))

    def _malformed(self) -> ServingError:
        return _invalid(f"Malformed request: {self.command} {self.path}")

    def _get(self) -> dict:
        match = _MODEL_PATH.fullmatch(self.path.split("?")[0])
        if match is None:
            raise self._malformed()
        name, version, metadata = match.groups()
        if metadata:
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[SIGNATURE_DEF_FIELD])
            request.model_spec.name = name
            if version is not None:
                request.model_spec.version.value = int(version)
            response = self.core.get_model_metadata(request)
            signature_def_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_def_map)
            return {"model_spec": _message_to_dict(response.model_spec),
                    "metadata": {SIGNATURE_DEF_FIELD: _message_to_dict(signature_def_map)}}
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = int(version)
        return _message_to_dict(self.core.get_model_status(request))

    def _post(self, body: bytes) -> dict:
        match = _PREDICT_PATH.fullmatch(self.path.split("?")[0])
        if match is None:
            raise self._malformed()
        name, version, method = match.groups()
        if method.lower() != "predict":
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f"{method} is not implemented by this server; use :predict")
        request, row_format = predict_request_from_json(self.core, name, version, body)
        return predict_response_to_json(self.core.predict(request), row_format)

    def log_message(self, format, *args):  # noqa: A002 (the standard library's signature)
        _LOG.debug("%s - %s", self.address_string(), format % args)


def make_rest_server(core: ServerCore, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """A ThreadingHTTPServer answering the REST API (not started: call ``serve_forever``)."""
    handler = type("RestHandler", (_RestHandler,), {"core": core})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
