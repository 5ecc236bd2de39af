"""Fixtures: a model base path with version 1 and a running server (gRPC + REST on free ports)."""
import pytest

from serving.config import ServerConfig
from serving.server import ModelServer
from tests.serving.saved_models import MODEL, write_version


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("models"))
    write_version(path, 1)
    return path


@pytest.fixture(scope="module")
def server(base_path):
    config = ServerConfig(model_name=MODEL, model_base_path=base_path, grpc_port=0, rest_port=0,
                          file_system_poll_wait_seconds=0.2, shutdown_grace_seconds=1.0)
    with ModelServer(config) as running:
        yield running
