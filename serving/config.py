"""Options of the TF-Serving-protocol model server, in one dataclass.

The field names follow ``tensorflow_model_server``'s flags where one exists
(``model_name``, ``model_base_path``, ``file_system_poll_wait_seconds``), so the same
model directory moves to the official ``tensorflow/serving`` image unchanged.
"""
from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """What the server serves and how it listens.

    Attributes:
      model_name: the name clients put in ``ModelSpec.name``.
      model_base_path: directory holding version directories ``<base>/<int>/`` with a
        ``saved_model.pb`` each; the highest version is served.
      host: interface to bind; ``127.0.0.1`` keeps the server local, ``0.0.0.0`` opens it.
      grpc_port: gRPC port (``PredictionService`` + ``ModelService``); 0 = a free port
        chosen by the OS (read it back from ``ModelServer.grpc_port``).
      rest_port: REST port (``/v1/models/...``); ``None`` = no REST server; 0 = a free port.
      grpc_max_threads: threads answering gRPC calls concurrently.
      max_message_bytes: largest gRPC message accepted or sent, in bytes.
      file_system_poll_wait_seconds: how often the base path is scanned for new versions.
      shutdown_grace_seconds: on stop, in-flight calls get this long to finish.
    """

    model_name: str
    model_base_path: str
    host: str = "127.0.0.1"
    grpc_port: int = 8500
    rest_port: int | None = 8501
    grpc_max_threads: int = 16
    max_message_bytes: int = 64 * 1024 * 1024
    file_system_poll_wait_seconds: float = 1.0
    shutdown_grace_seconds: float = 5.0

    def __post_init__(self):
        if not self.model_name or "/" in self.model_name or ":" in self.model_name:
            raise ValueError(f"model_name must be non-empty without '/' or ':', got {self.model_name!r}")
        if not os.path.isdir(self.model_base_path):
            raise ValueError(f"model_base_path is not a directory: {self.model_base_path!r}")
        if not self.host:
            raise ValueError(f"host must be non-empty, got {self.host!r}")
        for name in ("grpc_port", "rest_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise ValueError(f"{name} must be in 0..65535, got {port!r}")
        if self.rest_port is not None and self.rest_port != 0 and self.rest_port == self.grpc_port:
            raise ValueError(f"rest_port must differ from grpc_port, both are {self.grpc_port!r}")
        if self.grpc_max_threads < 1:
            raise ValueError(f"grpc_max_threads must be >= 1, got {self.grpc_max_threads!r}")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes!r}")
        if not self.file_system_poll_wait_seconds > 0:
            raise ValueError("file_system_poll_wait_seconds must be > 0, "
                             f"got {self.file_system_poll_wait_seconds!r}")
        if self.shutdown_grace_seconds < 0:
            raise ValueError(f"shutdown_grace_seconds must be >= 0, got {self.shutdown_grace_seconds!r}")
