"""A small Python client for the TF Serving gRPC API (this server or ``tensorflow/serving``).

Uses only the official stubs. Failed calls raise ``grpc.RpcError`` unchanged, so
``error.code()`` is the TF Serving status (NOT_FOUND, INVALID_ARGUMENT, ...).

Example::

    with PredictClient("127.0.0.1:8500", "htgnn") as client:
        outputs = client.predict({"examples": np.array([serialized_example], dtype=object)})
        outputs["ltv_30"]  # np.ndarray, one value per user
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving.errors import status_code_from_value

_INTERNAL_SIGNATURE_PREFIX = "__saved_model"


@dataclasses.dataclass(frozen=True)
class Signature:
    """One signature of the served model: input and output aliases with their specs."""

    method_name: str
    inputs: dict[str, tf.TensorSpec]
    outputs: dict[str, tf.TensorSpec]


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """What ``GetModelMetadata`` says: the served version and its signatures."""

    name: str
    version: int
    signatures: dict[str, Signature]


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One entry of ``GetModelStatus``: state is AVAILABLE, LOADING, END, ..."""

    version: int
    state: str
    error_code: str
    error_message: str


def _as_array(value) -> np.ndarray:
    """``value`` as an array; strings from Python objects keep every byte (dtype=object)."""
    array = np.asarray(value)
    if array.dtype.kind in "SU" and not isinstance(value, np.ndarray):
        return np.array(value, dtype=object)  # from the original objects, NULs included
    return array


def _specs(tensor_infos) -> dict[str, tf.TensorSpec]:
    return {alias: tf.TensorSpec(tf.TensorShape(info.tensor_shape), tf.as_dtype(info.dtype), name=alias)
            for alias, info in tensor_infos.items()}


class PredictClient:
    """Calls one model's signature over gRPC.

    Args:
      target: ``host:port`` of the server.
      model_name: the served model's name.
      signature_name: the signature ``predict`` calls.
      timeout: seconds per call.
      version: pin a version; ``None`` = whatever the server serves (the highest).
      max_message_bytes: largest request / response accepted by the channel.
    """

    def __init__(self, target: str, model_name: str, signature_name: str = "serving_default",
                 timeout: float = 10.0, *, version: int | None = None,
                 max_message_bytes: int = 64 * 1024 * 1024):
        if not model_name:
            raise ValueError(f"model_name must be non-empty, got {model_name!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.target = target
        self.model_name = model_name
        self.signature_name = signature_name
        self.timeout = timeout
        self.version = version
        self._channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", max_message_bytes),
                             ("grpc.max_send_message_length", max_message_bytes)])
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _fill_spec(self, model_spec, with_signature: bool) -> None:
        model_spec.name = self.model_name
        if with_signature:
            model_spec.signature_name = self.signature_name
        if self.version is not None:
            model_spec.version.value = self.version

    def predict(self, inputs: Mapping[str, np.ndarray],
                output_filter: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Output alias -> array (all outputs, or only those in ``output_filter``).

        Inputs are arrays or (nested) lists. Give strings as lists of ``bytes`` or as
        arrays with ``dtype=object``: numpy's fixed-width ``bytes_`` arrays drop trailing
        NUL bytes, which corrupts serialized protos. String outputs come back as
        ``dtype=object`` arrays of ``bytes``.
        """
        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec, with_signature=True)
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(_as_array(value)))
        request.output_filter.extend(output_filter or [])
        response = self._predictions.Predict(request, timeout=self.timeout)
        return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}

    def metadata(self) -> ModelMetadata:
        """The served version and its callable signatures' inputs and outputs.

        TF2 SavedModels also list ``__saved_model_init_op`` (an op, not a callable
        signature); it is left out here.
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._fill_spec(request.model_spec, with_signature=False)
        response = self._predictions.GetModelMetadata(request, timeout=self.timeout)
        signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_def_map)
        signatures = {name: Signature(method_name=sig.method_name, inputs=_specs(sig.inputs),
                                      outputs=_specs(sig.outputs))
                      for name, sig in signature_def_map.signature_def.items()
                      if not name.startswith(_INTERNAL_SIGNATURE_PREFIX)}
        return ModelMetadata(name=response.model_spec.name, version=response.model_spec.version.value,
                             signatures=signatures)

    def status(self) -> list[VersionStatus]:
        """Every version the server knows of this model, highest first."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill_spec(request.model_spec, with_signature=False)
        response = self._models.GetModelStatus(request, timeout=self.timeout)
        state_names = get_model_status_pb2.ModelVersionStatus.State
        return [VersionStatus(version=entry.version, state=state_names.Name(entry.state),
                              error_code=status_code_from_value(entry.status.error_code).name,
                              error_message=entry.status.error_message)
                for entry in response.model_version_status]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "PredictClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

