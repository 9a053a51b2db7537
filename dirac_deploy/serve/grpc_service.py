"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), on the generated stubs that
tritonclient[grpc] ships (no hand-written protobuf). Decodes, calls `dataplane.DataPlane` (as HTTP does) and encodes.

Implemented: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig, ModelInfer (raw
or typed input contents; outputs always as raw_output_contents, which is what tritonclient reads).
"""

from __future__ import annotations

import logging
import time

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from .dataplane import DataPlane
from .limits import ServeLimits
from .metrics import GRPC_TO_HTTP, UNKNOWN_MODEL
from .protocol import NP_TO_DTYPE, InferRequest, ProtocolError, RequestedOutput, decode_tensor

_log = logging.getLogger("dirac_deploy.serve")
_TYPED_FIELD = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents", "INT32": "int_contents",
                "INT16": "int_contents", "INT8": "int_contents", "UINT8": "uint_contents", "BOOL": "bool_contents"}


def _param(p) -> object:
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def request_from_proto(request) -> InferRequest:
    """ModelInferRequest -> the transport-free InferRequest (numpy views of raw contents, no copy), decoded by
    the same `protocol.decode_tensor` as HTTP requests."""
    if not request.inputs:
        raise ProtocolError("request has no inputs")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs = []
    for i, t in enumerate(request.inputs):
        if raw:
            inputs.append(decode_tensor(t.name, list(t.shape), t.datatype, raw=raw[i]))
        else:
            values = getattr(t.contents, _TYPED_FIELD.get(t.datatype, "fp32_contents"))
            inputs.append(decode_tensor(t.name, list(t.shape), t.datatype, values=values))
    outputs = [RequestedOutput(o.name, True) for o in request.outputs] or None
    params = {k: _param(v) for k, v in request.parameters.items()}
    return InferRequest(request.id or None, inputs, outputs, params, True)


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The gRPC transport of `DataPlane`: each RPC decodes, asks the data plane, encodes (a `ProtocolError`'s
    HTTP status becomes NOT_FOUND or INVALID_ARGUMENT)."""

    def __init__(self, plane: DataPlane):
        self.plane, self.metrics = plane, plane.metrics

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name))

    async def ServerMetadata(self, request, context):
        meta = self.plane.server_metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    async def _lookup(self, name, context) -> None:
        try:
            self.plane.model(name)
        except ProtocolError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, _details(str(e)))

    async def ModelMetadata(self, request, context):
        await self._lookup(request.name, context)
        described = self.plane.model_metadata(request.name)
        tensors = [[pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                    for t in described[kind]] for kind in ("inputs", "outputs")]
        return pb.ModelMetadataResponse(name=described["name"], versions=described["versions"],
                                        platform=described["platform"], inputs=tensors[0], outputs=tensors[1])

    async def ModelConfig(self, request, context):
        await self._lookup(request.name, context)
        return pb.ModelConfigResponse(config=self.plane.model_config(request.name))

    async def ModelInfer(self, request, context):
        start = time.perf_counter()
        name = request.model_name
        if not self.plane.model_ready(name):
            self.metrics.count(UNKNOWN_MODEL, "grpc", GRPC_TO_HTTP["NOT_FOUND"])
        await self._lookup(name, context)
        try:
            result = await self.plane.infer(name, request_from_proto(request))
        except ProtocolError as e:
            self.metrics.count(name, "grpc", GRPC_TO_HTTP["INVALID_ARGUMENT"])
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _details(str(e)))
        except Exception as e:  # a bug or a runtime failure: answer INTERNAL, log, keep serving
            _log.exception("gRPC infer on model %r failed", name)
            self.metrics.count(name, "grpc", GRPC_TO_HTTP["INTERNAL"])
            await context.abort(grpc.StatusCode.INTERNAL, _details(f"inference failed: {type(e).__name__}: {e}"))
        response = pb.ModelInferResponse(model_name=name, model_version="1", id=request.id)
        for out, arr, _ in result.outputs:
            arr = np.ascontiguousarray(arr)
            response.outputs.add(name=out, datatype=NP_TO_DTYPE[arr.dtype], shape=list(arr.shape))
            response.raw_output_contents.append(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        self.metrics.count(name, "grpc", GRPC_TO_HTTP["OK"])
        self.metrics.observe(name, time.perf_counter() - start)
        return response


def _details(text: str) -> str:
    """An error's details travel in an HTTP/2 trailer, which clients cap at a few KB (a longer one arrives as
    'Stream removed'): messages that echo a client's names are cut to fit."""
    return text if len(text) <= 1000 else text[:1000] + " ..."


async def start_grpc(plane: DataPlane, address: str) -> grpc.aio.Server:
    """Start a grpc.aio server on the running event loop (the HTTP server's); the caller stops it.

    Requests larger than `limits.max_body_bytes` (the HTTP body limit) are refused by gRPC with
    RESOURCE_EXHAUSTED. At most `limits.max_connections` connections are accepted (gRPC core closes the rest
    before any handshake), so idle connections cannot use up the open-files limit the HTTP side shares. At most
    `max_inflight_bytes // max_body_bytes` calls run at once (others get RESOURCE_EXHAUSTED), so requests held
    in memory stay within the same budget as HTTP's.
    """
    limits: ServeLimits = plane.limits
    max_body_bytes = limits.max_body_bytes
    server = grpc.aio.server(maximum_concurrent_rpcs=max(1, limits.max_inflight_bytes // max_body_bytes),
                             options=[("grpc.max_receive_message_length", max_body_bytes),
                                      ("grpc.max_send_message_length", 256 << 20),
                                      # bounds per connection; idle connections are closed after a minute
                                      ("grpc.max_concurrent_streams", 64),
                                      ("grpc.max_connection_idle_ms", 60_000),
                                      ("grpc.max_metadata_size", 16 << 10),
                                      ("grpc.max_allowed_incoming_connections", limits.max_connections)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(plane), server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    await server.start()
    return server
