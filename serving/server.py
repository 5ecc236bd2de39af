"""A model server speaking the TF Serving protocol, over ``tf.saved_model.load``.

The TF Serving C++ binary is not obtainable on our machines, so this server answers the
official gRPC services from ``tensorflow_serving.apis`` (and, optionally, the REST API
on the same semantics) for local use, tests and the demo. In production the same model
directory is served by the ``tensorflow/serving`` image; a client cannot tell the two
apart for the calls below.

* ``PredictionService``: ``Predict`` and ``GetModelMetadata`` (``signature_def``);
  ``Classify``, ``Regress`` and ``MultiInference`` answer UNIMPLEMENTED (the htgnn model
  exports a Predict signature only).
* ``ModelService``: ``GetModelStatus``; ``HandleReloadConfigRequest`` answers
  UNIMPLEMENTED (one model, given on the command line).
* Versions: ``<base>/<int>/saved_model.pb``, highest served, new versions picked up by a
  poller without restart (see ``serving.model_manager``).
* Calls run on a thread pool; SIGTERM / SIGINT stop the server gracefully (in-flight
  calls get ``--shutdown_grace_seconds``).

Only TensorFlow and the serving APIs are imported here: never TF-GNN or model code.

Usage: ``python -m serving.server --model_name=htgnn --model_base_path=/models/htgnn``
(or ``htgnn serve ...``).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import logging
import signal
import threading
from typing import Callable, Sequence

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.config import ServerConfig
from serving.errors import ServingError
from serving.model_manager import ModelManager
from serving.protocol import ServerCore
from serving.rest import make_rest_server

_LOG = logging.getLogger(__name__)

_UNIMPLEMENTED_INFERENCE = (
    "{method} is not implemented by this server; call Predict with the model's "
    "serving_default signature (the htgnn SavedModel exports a Predict signature only)")


def _answer(context: grpc.ServicerContext, handler: Callable, request):
    """Runs ``handler(request)``, turning a ServingError into the call's gRPC status."""
    try:
        return handler(request)
    except ServingError as error:
        context.abort(error.code, error.message)
    except Exception as error:  # a bug must fail the call, never the server
        _LOG.exception("Internal error while serving %s", type(request).__name__)
        context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService`` over a ``ServerCore``."""

    def __init__(self, core: ServerCore):
        self._core = core

    def Predict(self, request, context):
        return _answer(context, self._core.predict, request)

    def GetModelMetadata(self, request, context):
        return _answer(context, self._core.get_model_metadata, request)

    def Classify(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _UNIMPLEMENTED_INFERENCE.format(method="Classify"))

    def Regress(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, _UNIMPLEMENTED_INFERENCE.format(method="Regress"))

    def MultiInference(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      _UNIMPLEMENTED_INFERENCE.format(method="MultiInference"))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService`` over a ``ServerCore``."""

    def __init__(self, core: ServerCore):
        self._core = core

    def GetModelStatus(self, request, context):
        return _answer(context, self._core.get_model_status, request)

    def HandleReloadConfigRequest(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "HandleReloadConfigRequest is not implemented: this server serves the one "
                      "model given by --model_name/--model_base_path; restart it to change that")


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ModelServer:
    """The gRPC (and optional REST) server for one model; ``start()`` then ``stop()``.

    Also a context manager. ``grpc_port`` / ``rest_port`` are the bound ports (useful
    when the config asks for port 0).
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        self.manager = ModelManager(name=config.model_name, base_path=config.model_base_path,
                                    poll_wait_seconds=config.file_system_poll_wait_seconds)
        self.core = ServerCore({config.model_name: self.manager})
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._grpc_server: grpc.Server | None = None
        self._rest_server = None
        self._rest_thread: threading.Thread | None = None

    def start(self) -> "ModelServer":
        """Loads the model, binds the ports, starts answering; OSError if a port is taken."""
        config = self.config
        self.manager.start()
        try:
            self._bind()
        except OSError:
            self.manager.stop()
            raise
        self._grpc_server.start()
        _LOG.info("Running gRPC ModelServer at %s", _address(config.host, self.grpc_port))
        if self._rest_server is not None:
            self._rest_thread = threading.Thread(target=self._rest_server.serve_forever,
                                                 name="rest", daemon=True)
            self._rest_thread.start()
            _LOG.info("Exporting HTTP/REST API at %s", _address(config.host, self.rest_port))
        return self

    def _bind(self) -> None:
        config = self.config
        self._grpc_server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=config.grpc_max_threads,
                                                  thread_name_prefix="grpc"),
            options=[("grpc.max_receive_message_length", config.max_message_bytes),
                     ("grpc.max_send_message_length", config.max_message_bytes),
                     ("grpc.so_reuseport", 0)])  # a taken port must fail, not be shared
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.core), self._grpc_server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.core),
                                                                  self._grpc_server)
        address = _address(config.host, config.grpc_port)
        try:
            self.grpc_port = self._grpc_server.add_insecure_port(address)
        except RuntimeError as error:
            self._grpc_server = None
            raise OSError(f"cannot bind gRPC to {address}: {error}") from error
        if config.rest_port is not None:
            try:
                self._rest_server = make_rest_server(self.core, config.host, config.rest_port)
            except OSError as error:
                self._grpc_server.stop(None)
                self._grpc_server = None
                raise OSError(f"cannot bind REST to {_address(config.host, config.rest_port)}: "
                              f"{error}") from error
            self.rest_port = self._rest_server.server_address[1]

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stops accepting calls, lets in-flight ones finish (up to the grace), unloads."""
        grace = self.config.shutdown_grace_seconds if grace_seconds is None else grace_seconds
        if self._rest_server is not None:
            self._rest_server.shutdown()
            self._rest_server.server_close()
            self._rest_thread.join()
            self._rest_server = None
        if self._grpc_server is not None:
            self._grpc_server.stop(grace).wait()
            self._grpc_server = None
        self.manager.stop()
        _LOG.info("Model server stopped")

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def build_arg_parser() -> argparse.ArgumentParser:
    defaults = {field: ServerConfig.__dataclass_fields__[field].default
                for field in ServerConfig.__dataclass_fields__}
    parser = argparse.ArgumentParser(
        prog="htgnn serve",
        description="Serve a SavedModel over the TF Serving gRPC API (PredictionService, "
                    "ModelService) and, optionally, its REST API. Flags follow "
                    "tensorflow_model_server's where one exists.")
    parser.add_argument("--model_name", required=True,
                        help="name clients put in ModelSpec.name (and in /v1/models/<name>)")
    parser.add_argument("--model_base_path", required=True,
                        help="directory of version directories <base>/<int>/saved_model.pb; "
                             "the highest version is served and new ones are picked up live")
    parser.add_argument("--host", default=defaults["host"],
                        help="interface to bind (default %(default)s: local only; 0.0.0.0 = all)")
    parser.add_argument("--port", type=int, default=defaults["grpc_port"],
                        help="gRPC port (default %(default)s; 0 = a free port, logged at start)")
    parser.add_argument("--rest_api_port", type=int, default=defaults["rest_port"],
                        help="REST port for /v1/models/... (default %(default)s; 0 = no REST API, "
                             "as in tensorflow_model_server)")
    parser.add_argument("--grpc_max_threads", type=int, default=defaults["grpc_max_threads"],
                        help="threads answering gRPC calls concurrently (default %(default)s)")
    parser.add_argument("--max_message_bytes", type=int, default=defaults["max_message_bytes"],
                        help="largest gRPC request or response in bytes (default %(default)s)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float,
                        default=defaults["file_system_poll_wait_seconds"],
                        help="seconds between scans of the base path for new versions "
                             "(default %(default)s)")
    parser.add_argument("--shutdown_grace_seconds", type=float,
                        default=defaults["shutdown_grace_seconds"],
                        help="on SIGTERM/SIGINT, seconds in-flight calls get to finish "
                             "(default %(default)s)")
    parser.add_argument("--log_level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default %(default)s)")
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        model_name=args.model_name,
        model_base_path=args.model_base_path,
        host=args.host,
        grpc_port=args.port,
        rest_port=args.rest_api_port or None,
        grpc_max_threads=args.grpc_max_threads,
        max_message_bytes=args.max_message_bytes,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        shutdown_grace_seconds=args.shutdown_grace_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the server until SIGTERM or SIGINT; returns the exit status."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    stop_requested = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda received, frame: stop_requested.set())
    server = ModelServer(config)
    try:
        server.start()
    except OSError as error:
        _LOG.error("%s", error)
        return 1
    while not stop_requested.wait(0.5):
        pass
    _LOG.info("Stop requested; shutting down")
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
