"""ServerConfig validation: every bad value is rejected with the value in the message."""
import re

import pytest

from serving.config import ServerConfig
from tests.serving.saved_models import MODEL


@pytest.mark.parametrize("overrides,message", [
    ({"model_name": ""}, "model_name"),
    ({"model_base_path": "/no/such/dir"}, "'/no/such/dir'"),
    ({"grpc_port": 70000}, "70000"),
    ({"grpc_port": 9000, "rest_port": 9000}, "9000"),
    ({"grpc_max_threads": 0}, "grpc_max_threads must be >= 1, got 0"),
    ({"file_system_poll_wait_seconds": 0}, "got 0"),
], ids=["empty_name", "missing_base", "port_range", "same_ports", "workers", "poll"])
def test_config_rejects_bad_values(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ServerConfig(**{"model_name": MODEL, "model_base_path": str(tmp_path), **overrides})
