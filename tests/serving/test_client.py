"""PredictClient against a running server: values, signatures, pinned versions, bytes."""
from __future__ import annotations

import numpy as np

from serving.client import PredictClient
from tests.serving.saved_models import MODEL, examples, serialize


def test_predict_round_trip_exact_values(server):
    xs = np.array([0.5, 1.5, -2.25, 10.0], dtype=np.float32)
    with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
        outputs = client.predict({"examples": examples(xs)})
    assert sorted(outputs) == ["lt_30", "ltv_30", "user_id"]
    np.testing.assert_array_equal(outputs["ltv_30"], 2.0 * xs + 1.0)
    np.testing.assert_array_equal(outputs["lt_30"], xs + 1.0)
    assert outputs["ltv_30"].dtype == np.float32
    assert list(outputs["user_id"]) == [b"u0", b"u1", b"u2", b"u3"]


def test_client_keeps_trailing_nul_bytes_of_serialized_examples(server):
    # Both features end in NUL bytes (x = 0.0 is four zero bytes), so the serialized
    # example does whatever the map order: a numpy bytes_ array would cut them off; a
    # plain list must arrive intact.
    serialized = serialize(0.0, "u\x00")
    assert serialized.endswith(b"\x00")
    with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL) as client:
        outputs = client.predict({"examples": [serialized]})
    assert list(outputs["user_id"]) == [b"u\x00"]
    np.testing.assert_array_equal(outputs["ltv_30"], [1.0])


def test_other_signature_and_pinned_version(server):
    with PredictClient(f"127.0.0.1:{server.grpc_port}", MODEL, signature_name="scale",
                       version=1) as client:
        outputs = client.predict({"x": np.array([1.0, -4.0, 0.25], dtype=np.float32)})
    np.testing.assert_array_equal(outputs["y"], [3.0, -12.0, 0.75])
