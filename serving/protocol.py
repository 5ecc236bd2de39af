"""TF Serving's request semantics over protos, shared by the gRPC and REST front ends.

Copied from ``tensorflow_model_server`` (predict_util.cc, get_model_metadata_impl.cc,
get_model_status_impl.cc), messages included where practical:

* no ``model_spec`` -> INVALID_ARGUMENT ``Missing ModelSpec``;
* unknown model name or version -> NOT_FOUND ``Servable not found for request: ...``;
  a ``version_label`` -> INVALID_ARGUMENT (no labels are configured here);
* empty ``signature_name`` = ``serving_default``; unknown -> FAILED_PRECONDITION;
* missing or extra inputs -> INVALID_ARGUMENT ``input size does not match signature``;
  wrong dtype, undecodable tensor, incompatible shape, or the model itself raising
  ``InvalidArgumentError`` (e.g. unparsable serialized examples) -> INVALID_ARGUMENT;
* ``output_filter``: only those outputs, unknown or duplicate alias -> INVALID_ARGUMENT;
* the response echoes the resolved ``model_spec`` (name, version, signature_name);
* ``GetModelMetadata`` supports the ``signature_def`` field only, returning the
  SignatureDefMap of the served MetaGraph packed in an ``Any``;
* ``GetModelStatus`` lists every version seen (highest first) with its state.

Departure: TF Serving checks dtypes and shapes when the session runs; here they are
checked before the call because a concrete function rejects them with Python errors.
"""
from __future__ import annotations

import re
from typing import Mapping

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2,
                                     predict_pb2)

from serving.errors import ServingError, status_code_from_value
from serving.model_manager import LoadedVersion, ModelManager

DEFAULT_SIGNATURE = "serving_default"
# Eager prefix of errors raised inside a loaded function; TF Serving sends only the rest.
_GRAPH_ERROR_PREAMBLE = re.compile(
    r"^Graph execution error:\s*Detected at node \S+ defined at \(most recent call last\):\s*"
    r"<stack traces unavailable>\s*")
SIGNATURE_DEF_FIELD = "signature_def"


class ServerCore:
    """Answers Predict, GetModelMetadata and GetModelStatus for the managed models.

    Args:
      managers: model name -> its ``ModelManager``.
    """

    def __init__(self, managers: Mapping[str, ModelManager]):
        self._managers = dict(managers)

    # -- resolution -------------------------------------------------------------------
    def _resolve(self, model_spec: model_pb2.ModelSpec) -> LoadedVersion:
        if model_spec.WhichOneof("version_choice") == "version_label":
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Unrecognized servable version label: {model_spec.version_label}")
        version = model_spec.version.value if model_spec.HasField("version") else None
        manager = self._managers.get(model_spec.name)
        if manager is None:
            spec = (f"Latest({model_spec.name})" if version is None
                    else f"Specific({model_spec.name}, {version})")
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {spec}")
        return manager.get(version)

    def resolve_signature(self, model_spec: model_pb2.ModelSpec
                          ) -> tuple[LoadedVersion, str, meta_graph_pb2.SignatureDef]:
        """(loaded version, resolved signature name, its SignatureDef) or a ServingError."""
        loaded = self._resolve(model_spec)
        signature_name = model_spec.signature_name or DEFAULT_SIGNATURE
        signature_def = loaded.signature_defs.get(signature_name)
        if signature_def is None or signature_name not in loaded.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{signature_name}" not found.')
        return loaded, signature_name, signature_def

    # -- Predict ----------------------------------------------------------------------
    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        loaded, signature_name, signature_def = self.resolve_signature(request.model_spec)
        _check_input_names(signature_def, request)
        output_aliases = _output_aliases(signature_def, request.output_filter)
        feeds = {alias: _input_tensor(alias, signature_def.inputs[alias], request.inputs[alias])
                 for alias in signature_def.inputs}
        try:
            outputs = loaded.signatures[signature_name](**feeds)
        except tf.errors.OpError as error:
            raise ServingError(status_code_from_value(error.error_code),
                               _GRAPH_ERROR_PREAMBLE.sub("", error.message)) from error
        except UnicodeDecodeError as error:  # TF could not decode the op's error message
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "The model rejected the input with an error message that is not "
                               "UTF-8 (typically serialized tf.train.Example that do not parse): "
                               f"{error}") from error
        except (TypeError, ValueError) as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from error

        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = signature_name
        for alias in output_aliases:
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(outputs[alias].numpy()))
        return response

    # -- GetModelMetadata -------------------------------------------------------------
    def get_model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                           ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        if not request.metadata_field:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Metadata field {field} is not supported")
        loaded = self._resolve(request.model_spec)
        signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in loaded.signature_defs.items():
            signature_def_map.signature_def[name].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = loaded.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map)
        return response

    # -- GetModelStatus ---------------------------------------------------------------
    def get_model_status(self, request: get_model_status_pb2.GetModelStatusRequest
                         ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        name = request.model_spec.name
        manager = self._managers.get(name)
        states = manager.version_states() if manager is not None else {}
        if request.model_spec.HasField("version"):
            version = request.model_spec.version.value
            if version not in states:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        elif not states:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, state in states.items():
            entry = response.model_version_status.add()
            entry.version = version
            entry.state = state.state
            entry.status.error_code = state.error_code.value[0]
            entry.status.error_message = state.error_message
        return response


def _check_input_names(signature_def: meta_graph_pb2.SignatureDef,
                       request: predict_pb2.PredictRequest) -> None:
    sent, expected = set(request.inputs), set(signature_def.inputs)
    if sent != expected:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")


def _output_aliases(signature_def: meta_graph_pb2.SignatureDef, output_filter) -> list[str]:
    if not output_filter:
        return list(signature_def.outputs)
    seen: list[str] = []
    for alias in output_filter:
        if alias not in signature_def.outputs:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(signature_def.outputs))}}}.")
        if alias in seen:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen


def _input_tensor(alias: str, tensor_info: meta_graph_pb2.TensorInfo, proto) -> tf.Tensor:
    """The request's TensorProto as a tensor, checked against the signature's TensorInfo."""
    expected_dtype = tf.as_dtype(tensor_info.dtype)
    if proto.dtype != tensor_info.dtype:
        sent = tf.as_dtype(proto.dtype).name if proto.dtype else "DT_INVALID"
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Expects arg[{alias}] to be {expected_dtype.name} but {sent} is provided")
    if proto.tensor_shape.unknown_rank or any(dim.size < 0 for dim in proto.tensor_shape.dim):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Cannot decode input tensor {alias}: its shape must be fully defined, "
                           f"got {tf.TensorShape(proto.tensor_shape)}")
    try:
        array = tf.make_ndarray(proto)  # [*shape]
    except Exception as error:  # malformed TensorProto: content size, bad shape ...
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Cannot decode input tensor {alias}: {error}") from error
    expected_shape = tf.TensorShape(tensor_info.tensor_shape)
    if not expected_shape.is_compatible_with(array.shape):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Input {alias} has shape {list(array.shape)}, the signature expects "
                           f"{expected_shape}")
    return tf.constant(array, dtype=expected_dtype)
