"""serve.dataplane: the protocol without a transport. A front end of a few lines (as a new transport would be)
gets lookup, readiness, metadata, infer with top_k and the errors HTTP and gRPC map to their statuses."""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from dirac_deploy.serve.dataplane import DataPlane
from dirac_deploy.serve.model import ServedModel
from dirac_deploy.serve.protocol import InferRequest, ProtocolError, RequestedOutput, decode_tensor


def _plane():
    logits = np.array([[0.0, 3.0, 1.0, 2.0]], np.float32)
    model = ServedModel("m", (1, 2, 2), 4, "test", [lambda x: np.repeat(logits, len(x), 0)], Path("m"), {})
    return DataPlane({"m": model})


def _request(x, outputs=None, **params):
    tensor = decode_tensor("input", list(x.shape), "FP32", raw=x.astype(np.float32).tobytes())
    return InferRequest("r1", [tensor], outputs, params, False)


def test_dataplane_infers_and_selects_outputs_without_a_transport():
    plane = _plane()
    result = asyncio.run(plane.infer("m", _request(np.zeros((2, 1, 2, 2)), top_k=2)))
    out = {name: arr for name, arr, _ in result.outputs}
    assert out["logits"].shape == (2, 4) and out["top_k_indices"].tolist() == [[1, 3], [1, 3]]
    assert {"submitted", "start", "end"} <= set(result.run)
    asked = asyncio.run(plane.infer("m", _request(np.zeros((1, 1, 2, 2)), [RequestedOutput("logits", True)])))
    assert [(name, binary) for name, _, binary in asked.outputs] == [("logits", True)]
    assert b'model="m"' in plane.metrics.render()  # the runs were observed in the metrics every transport shares


def test_dataplane_says_what_is_wrong_with_the_status_each_transport_maps():
    plane = _plane()
    with pytest.raises(ProtocolError, match="unknown model 'nope'; served: m") as e:
        asyncio.run(plane.infer("nope", _request(np.zeros((1, 1, 2, 2)))))
    assert e.value.status == 404 and not plane.model_ready("nope") and plane.model_ready("m")
    with pytest.raises(ProtocolError, match=r"expects \[-1, 1, 2, 2\]") as e:
        asyncio.run(plane.infer("m", _request(np.zeros((1, 1, 3, 3)))))
    assert e.value.status == 400
    with pytest.raises(ProtocolError, match="top_k must be an integer in 1..4"):
        asyncio.run(plane.infer("m", _request(np.zeros((1, 1, 2, 2)), top_k=9)))


def test_dataplane_metadata_and_config_are_the_models():
    plane = _plane()
    assert plane.server_metadata()["extensions"] == ["binary_tensor_data"] and plane.live() and plane.ready()
    meta = plane.model_metadata("m")
    assert meta["inputs"][0]["shape"] == [-1, 1, 2, 2] and meta["outputs"][0]["shape"] == [-1, 4]
    assert plane.model_config("m").max_batch_size >= 1
