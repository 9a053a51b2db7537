"""The Open Inference Protocol (KServe v2) request/response codec, with Triton's binary tensor data extension.

Pure functions over bytes and numpy arrays; no web framework here. A request body is either JSON, or a JSON
header of `Inference-Header-Content-Length` bytes followed by raw little-endian tensors, one per input that
declares `parameters.binary_data_size`, in input order. Binary inputs become numpy views of the body
(zero-copy). Outputs are binary when requested per output (`parameters.binary_data`) or, when no outputs are
named, by the request-level `parameters.binary_data_output`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
          "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}
NP_TO_DTYPE = {np.dtype(v): k for k, v in DTYPES.items()}
HEADER_LENGTH = "inference-header-content-length"


class ProtocolError(Exception):
    """A bad request: `status` is the HTTP code, the message goes to the client as {"error": ...}."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class InputTensor:
    name: str
    shape: tuple[int, ...]
    datatype: str
    data: np.ndarray


@dataclass
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    id: str | None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None  # None: all outputs
    parameters: dict = field(default_factory=dict)
    binary_output_default: bool = False


def _json(data: bytes, what: str) -> dict:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"malformed JSON in {what}: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _shape(t: dict, name: str) -> tuple[int, ...]:
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}")
    return tuple(shape)


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Decode a v2 infer request (JSON or binary extension) into numpy tensors.

    Raises:
        ProtocolError: malformed JSON, bad or inconsistent header length, unknown datatype, element count or
            binary size not matching the shape.
    """
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"invalid Inference-Header-Content-Length {header_length!r}: not an integer") from None
        if not 0 < n <= len(body):
            raise ProtocolError(f"invalid Inference-Header-Content-Length {n}: the body has {len(body)} bytes")
        header, binary = _json(body[:n], "the inference header"), memoryview(body)[n:]
    else:
        header, binary = _json(body, "the request body"), memoryview(b"")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("request has no 'inputs' list")
    offset, inputs = 0, []
    for t in raw_inputs:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ProtocolError("each input needs a 'name'")
        name = t["name"]
        shape = _shape(t, name)
        datatype = t.get("datatype")
        if datatype not in DTYPES:
            raise ProtocolError(f"input '{name}': unknown datatype {datatype!r}; known: {', '.join(DTYPES)}")
        dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
        count = int(np.prod(shape, dtype=np.int64))
        params = t.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if header_length is None:
                raise ProtocolError(f"input '{name}' has binary_data_size but the Inference-Header-Content-Length "
                                    f"header is missing")
            if not isinstance(size, int) or size != count * dtype.itemsize:
                raise ProtocolError(f"input '{name}': binary_data_size {size!r} does not match shape {list(shape)} "
                                    f"of {datatype} ({count * dtype.itemsize} bytes)")
            if offset + size > len(binary):
                raise ProtocolError(f"input '{name}': {size} binary bytes declared, only {len(binary) - offset} present")
            data = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += size
        else:
            if "data" not in t:
                raise ProtocolError(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
            try:
                data = np.asarray(t["data"], dtype=dtype)
            except (TypeError, ValueError) as e:
                raise ProtocolError(f"input '{name}': data is not {datatype}: {e}") from None
            if data.size != count:
                raise ProtocolError(f"input '{name}': {data.size} elements do not match shape {list(shape)} ({count})")
            data = data.reshape(shape)
        inputs.append(InputTensor(name, shape, datatype, data))
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} binary bytes after the last input are not accounted for")
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    outputs = None
    if header.get("outputs") is not None:
        if not isinstance(header["outputs"], list):
            raise ProtocolError("'outputs' must be a list")
        outputs = []
        for o in header["outputs"]:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise ProtocolError("each requested output needs a 'name'")
            oparams = o.get("parameters") or {}
            outputs.append(RequestedOutput(o["name"], bool(oparams.get("binary_data", params.get("binary_data_output", False)))))
    request_id = header.get("id")
    return InferRequest(None if request_id is None else str(request_id), inputs, outputs, params,
                        bool(params.get("binary_data_output", False)))


def encode_infer_response(model_name: str, request_id: str | None, outputs: list[tuple[str, np.ndarray, bool]],
                          model_version: str = "1") -> tuple[bytes, dict[str, str]]:
    """Body and headers for a response; `outputs` are (name, array, binary?) in order."""
    header: dict = {"model_name": model_name, "model_version": model_version, "outputs": []}
    if request_id is not None:
        header["id"] = request_id
    chunks = []
    for name, arr, binary in outputs:
        arr = np.ascontiguousarray(arr)
        entry = {"name": name, "datatype": NP_TO_DTYPE[arr.dtype], "shape": list(arr.shape)}
        if binary:
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = arr.reshape(-1).tolist()
        header["outputs"].append(entry)
    head = json.dumps(header, separators=(",", ":")).encode()
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {"content-type": "application/octet-stream",
                                     "inference-header-content-length": str(len(head))}
