"""The Open Inference Protocol (KServe v2) request/response codec, with Triton's binary tensor data extension.

Pure functions over bytes and numpy arrays; no web framework and no transport here. HTTP and gRPC both
decode their tensors with `decode_tensor` and their requests into the same `InferRequest`, so a request means
the same thing, and a bad one gets the same error message, over either transport.

A request body is either JSON, or a JSON header of `Inference-Header-Content-Length` bytes followed by raw
little-endian tensors, one per input that declares `parameters.binary_data_size`, in input order. Binary inputs
become numpy views of the body (zero-copy). Outputs are binary when requested per output
(`parameters.binary_data`) or, when no outputs are named, by the request-level `parameters.binary_data_output`.

Limits (the README's serving section): rank at most `MAX_RANK`; the element count must match the data; JSON
nesting is bounded by Python's parser (deeper bodies are a 400); NaN and infinity are refused as input values,
and non-finite output values are written as JSON `null`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
          "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}
NP_TO_DTYPE = {np.dtype(v): k for k, v in DTYPES.items()}
HEADER_LENGTH = "inference-header-content-length"
MAX_RANK = 8


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


MAX_JSON_DIGITS = 40  # an integer in a request is a shape, an index or an id: never longer than this
DEFAULT_MAX_JSON_BYTES = 16 << 20  # decoded JSON costs ~10-30x its size in Python objects


def _bounded_int(text: str) -> int:
    if len(text) > MAX_JSON_DIGITS:
        raise ProtocolError(f"a JSON integer with {len(text)} digits; at most {MAX_JSON_DIGITS} are accepted")
    return int(text)


def _json(data: bytes, what: str, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> dict:
    if len(data) > max_bytes:
        raise ProtocolError(f"{what} is {len(data):,} bytes of JSON; at most {max_bytes:,} are accepted (send "
                            f"tensors as binary data, Triton's binary tensor extension, or raise `max_json_mb`)", 413)
    try:
        obj = json.loads(data, parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"malformed JSON in {what}: {e}") from None
    except RecursionError:
        raise ProtocolError(f"malformed JSON in {what}: nested too deeply") from None
    except ValueError as e:  # e.g. a float literal too long to convert
        raise ProtocolError(f"malformed JSON in {what}: {str(e)[:200]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def tensor_shape(shape, name: str) -> tuple[int, ...]:
    """A validated shape: a list of at most MAX_RANK non-negative integers."""
    if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}"[:400])
    if len(shape) > MAX_RANK:
        raise ProtocolError(f"input '{name}': shape has {len(shape)} dimensions; at most {MAX_RANK} are accepted")
    return tuple(int(d) for d in shape)


def _dtype(datatype, name: str) -> np.dtype:
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise ProtocolError(f"input '{name}': unknown datatype {datatype!r}; known: {', '.join(DTYPES)}"[:400])
    return np.dtype(DTYPES[datatype]).newbyteorder("<")


def decode_tensor(name: str, shape, datatype, *, raw=None, values=None) -> InputTensor:
    """One input tensor from its declared shape and datatype and either `raw` little-endian bytes (binary
    extension, gRPC raw contents; a zero-copy view) or `values` (JSON data or gRPC typed contents).

    Raises:
        ProtocolError: bad shape or datatype, a byte or element count that does not match the shape, values
            that are not numbers of the datatype, or NaN/infinity.
    """
    shape = tensor_shape(shape, name)
    dtype = _dtype(datatype, name)
    count = math.prod(shape)  # Python ints: no overflow, however large the declared dimensions
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise ProtocolError(f"input '{name}': {len(raw)} bytes of data (binary_data_size or raw contents) do not "
                                f"match shape {list(shape)} of "
                                f"{datatype} ({count * dtype.itemsize} bytes)")
        data = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    else:
        if values is None:
            raise ProtocolError(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
        if not isinstance(values, (list, tuple)) and not hasattr(values, "__len__"):
            raise ProtocolError(f"input '{name}': 'data' must be a list of numbers")
        try:
            data = np.asarray(values, dtype=dtype)
        except (TypeError, ValueError, OverflowError, RecursionError) as e:
            raise ProtocolError(f"input '{name}': data is not {datatype}: {str(e)[:200]}") from None
        if data.size != count:
            raise ProtocolError(f"input '{name}': {data.size} elements do not match shape {list(shape)} ({count})")
        data = data.reshape(shape)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ProtocolError(f"input '{name}' contains NaN or infinite values; send finite numbers")
    return InputTensor(name, shape, datatype, data)


def _params(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be an object, got {type(value).__name__}")
    return value


def _requested_outputs(raw, binary_default: bool) -> list[RequestedOutput] | None:
    """The request's 'outputs' (None: all of them), each binary when its own `binary_data` or the request's
    `binary_data_output` says so."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ProtocolError("'outputs' must be a list")
    outputs = []
    for o in raw:
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise ProtocolError("each requested output needs a 'name'")
        oparams = _params(o.get("parameters"), f"output '{o['name'][:100]}': 'parameters'")
        outputs.append(RequestedOutput(o["name"], bool(oparams.get("binary_data", binary_default))))
    return outputs


def parse_infer_request(body: bytes, header_length: str | None,
                        max_json_bytes: int = DEFAULT_MAX_JSON_BYTES) -> InferRequest:
    """Decode an HTTP v2 infer request (JSON or binary extension) into numpy tensors.

    Raises:
        ProtocolError: malformed JSON, bad or inconsistent header length, or any `decode_tensor` error.
    """
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError(f"invalid Inference-Header-Content-Length {header_length[:40]!r}: not an integer") from None
        if not 0 < n <= len(body):
            raise ProtocolError(f"invalid Inference-Header-Content-Length {n}: the body has {len(body)} bytes")
        header, binary = _json(body[:n], "the inference header", max_json_bytes), memoryview(body)[n:]
    else:
        header, binary = _json(body, "the request body", max_json_bytes), memoryview(b"")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("request has no 'inputs' list")
    offset, inputs = 0, []
    for t in raw_inputs:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ProtocolError("each input needs a 'name'")
        name = t["name"][:200]
        size = _params(t.get("parameters"), f"input '{name}': 'parameters'").get("binary_data_size")
        if size is None:
            inputs.append(decode_tensor(name, t.get("shape"), t.get("datatype"), values=t.get("data")))
            continue
        if header_length is None:
            raise ProtocolError(f"input '{name}' has binary_data_size but the Inference-Header-Content-Length "
                                f"header is missing")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(f"input '{name}': binary_data_size must be a non-negative integer, got {size!r}"[:300])
        if offset + size > len(binary):
            raise ProtocolError(f"input '{name}': {size} binary bytes declared, only {len(binary) - offset} present")
        inputs.append(decode_tensor(name, t.get("shape"), t.get("datatype"), raw=binary[offset:offset + size]))
        offset += size
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} binary bytes after the last input are not accounted for")
    params = _params(header.get("parameters"), "'parameters'")
    outputs = _requested_outputs(header.get("outputs"), bool(params.get("binary_data_output", False)))
    request_id = header.get("id")
    return InferRequest(None if request_id is None else str(request_id)[:200], inputs, outputs, params,
                        bool(params.get("binary_data_output", False)))


def _json_values(arr: np.ndarray) -> list:
    flat = arr.reshape(-1)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():  # JSON has no NaN or infinity: null instead
        return [v if math.isfinite(v) else None for v in flat.tolist()]
    return flat.tolist()


def encode_infer_response(model_name: str, request_id: str | None, outputs: list[tuple[str, np.ndarray, bool]],
                          model_version: str = "1") -> tuple[bytes, dict[str, str]]:
    """Body and headers for a response; `outputs` are (name, array, binary?) in order."""
    header: dict = {"model_name": model_name, "model_version": model_version, "outputs": []}
    if request_id is not None:
        header["id"] = request_id
    chunks = []
    for name, arr, binary in outputs:
        arr = np.ascontiguousarray(arr)
        entry: dict[str, object] = {"name": name, "datatype": NP_TO_DTYPE[arr.dtype], "shape": list(arr.shape)}
        if binary:
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_values(arr)
        header["outputs"].append(entry)
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {"content-type": "application/octet-stream",
                                     "inference-header-content-length": str(len(head))}
