"""`dirac-deploy serve`."""

from __future__ import annotations

import click

from .._optional import require
from . import main
from .options import checkpoint_options, load_options
from .render import console


@main.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 in containers).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535),
              help="Also serve the protocol over gRPC (inference.GRPCInferenceService) on this port [default: off].")
@click.option("--runtime", type=click.Choice(["onnxruntime", "torch"]), default="onnxruntime", show_default=True)
@click.option("--threads", type=click.IntRange(min=1),
              help="Intra-op threads per instance [default: all cores for one instance, else cores / instances].")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent copies of each model, each serving one request at a time (Triton's instance "
                   "count). 1 gives the lowest latency; under many concurrent clients on CPU, cores / threads "
                   "instances with few threads each give more throughput.")
@click.option("--max-batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Dynamic batching: requests that queue while every instance is busy run together, up to this "
                   "many images (a lone request never waits). 1 turns it off.")
@click.option("--max-body-mb", type=click.FloatRange(min=0.001), default=64.0, show_default=True,
              help="Reject request bodies larger than this (HTTP 413).")
@checkpoint_options
def serve(models, host, port, grpc_port, runtime, threads, instances, max_batch, max_body_mb, **opts):
    """Serve MODELS over the Open Inference Protocol (KServe v2, HTTP, binary tensor extension).

    \b
    Each MODEL is a plain.pth, an .onnx from export, any checkpoint fold reads (folded and verified at
    start), or a directory of such files; NAME=PATH sets the name (default: the file name without suffixes).
    Endpoints: /v2/health/{live,ready}, /v2, /v2/models/NAME[/ready], POST /v2/models/NAME/infer, /metrics;
    with --grpc-port also inference.GRPCInferenceService (live, ready, metadata, infer).
    """
    require("fastapi")
    require("uvicorn")
    from ..serve.server import load_models, run_server

    out = console()
    loaded = load_models(list(models), runtime, threads, load_options(**opts),
                         on_loaded=lambda m: out.print(f"loaded [bold]{m.name}[/bold]: {m.source} -> input "
                                                       f"[-1, {', '.join(map(str, m.input_shape))}], "
                                                       f"{m.num_classes} classes ({m.runtime}, "
                                                       f"{m.instances.size} instance(s), max batch {m.max_batch})"),
                         instances=instances, max_batch=max_batch)
    grpc = f" and gRPC {host}:{grpc_port}" if grpc_port else ""
    out.print(f"serving {len(loaded)} model(s) on http://{host}:{port}/v2{grpc} (Ctrl-C or SIGTERM to stop)")
    run_server(loaded, host, port, max_body_bytes=int(max_body_mb * 2**20), grpc_port=grpc_port)
