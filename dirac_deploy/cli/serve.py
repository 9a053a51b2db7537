"""`dirac-deploy serve`."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.markup import escape
from rich.text import Text

from ..runtimes import SERVING  # the table of engines; imports none of them
from ..serve.limits import ServeLimits  # no dependencies: the defaults below are the library's
from ..serving import SERVING_ENGINES  # the table of serving engines; imports none of them
from .options import checkpoint_options, load_options
from .render import console, err_console, settings

_LIMITS = ServeLimits()


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 in containers).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535),
              help="Also serve the protocol over gRPC (inference.GRPCInferenceService) on this port [default: off].")
@click.option("--runtime", type=click.Choice(SERVING),
              help="Runtime for every model that names none with MODEL@RUNTIME [default: per file: an OpenVINO IR "
                   ".xml (from `quantize --target openvino`, run at the precision it records) on openvino, "
                   "anything else on onnxruntime]. openvino needs pip install '.[openvino]'.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Intra-op threads per instance [default: all cores for one instance, else cores / instances].")
@click.option("--instances", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Independent copies of each model, each serving one request at a time (Triton's instance "
                   "count). 1 gives the lowest latency; under many concurrent clients on CPU, cores / threads "
                   "instances with few threads each give more throughput.")
@click.option("--max-batch", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Dynamic batching: requests that queue while every instance is busy run together, up to this "
                   "many images (a lone request never waits). 1 turns it off.")
@click.option("--max-body-mb", type=click.FloatRange(min=0.001, max=4096), default=64.0, show_default=True,
              help="Reject request bodies larger than this (HTTP 413, gRPC RESOURCE_EXHAUSTED).")
@click.option("--max-json-mb", type=click.FloatRange(min=0.001, max=4096), default=_LIMITS.max_json_bytes / 2**20,
              show_default=True,
              help="Reject HTTP requests whose JSON part is larger (413): decoded JSON numbers take 10-30x their "
                   "text in memory. Binary tensors (Triton's extension, tritonclient's default) are not JSON.")
@click.option("--max-inflight-mb", type=click.FloatRange(min=1, max=1 << 20),
              default=_LIMITS.max_inflight_bytes / 2**20, show_default=True,
              help="Request bodies held in memory at once over all HTTP connections; a request past it gets 503 "
                   "(at least --max-body-mb).")
@click.option("--max-connections", type=click.IntRange(1, 100_000), default=512, show_default=True,
              help="Open HTTP connections (one more gets 503 and is closed) and, separately, open gRPC connections "
                   "(gRPC closes the rest before any handshake); kept below the open-files limit.")
@click.option("--header-timeout", type=click.FloatRange(min=0.1, max=3600), default=10.0, show_default=True,
              help="Seconds for a request's headers to arrive (408 after).")
@click.option("--body-timeout", type=click.FloatRange(min=0.1, max=3600), default=10.0, show_default=True,
              help="Seconds a request body may stall between chunks (408 after).")
@click.option("--min-body-rate", type=click.FloatRange(min=0), default=_LIMITS.min_body_rate, show_default=True,
              help="Bytes per second a request body must average once it has taken --body-timeout seconds (408 "
                   "below it; 0: no minimum).")
@click.option("--max-header-kb", type=click.FloatRange(min=1, max=1024), default=_LIMITS.max_header_bytes / 1024,
              show_default=True,
              help="Largest request headers, request line included (431 above it).")
@click.option("--drain-seconds", type=click.FloatRange(min=0, max=3600), default=10.0, show_default=True,
              help="On SIGTERM or Ctrl-C, how long in-flight requests may finish before they are dropped.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Audit each .onnx and re-run the parity probe its export recorded; --no-verify serves an ONNX "
                   "that was not written by `dirac-deploy export` (nothing then proves it is a folded chain).")
@click.option("--engine", type=click.Choice(list(SERVING_ENGINES)), default="builtin", show_default=True,
              help="ray: the same routes (and --grpc-port service) on Ray Serve, one app per replica behind Ray's "
                   "proxies (pip install '.[ray]'; docs/images-and-scale-out.md).")
@click.option("--replicas", type=click.IntRange(1, 1024), default=2, show_default=True,
              help="--engine ray: replicas, each loading and verifying every MODEL.")
@click.option("--cpus-per-replica", type=click.FloatRange(0.01, 1024), default=1.0, show_default=True,
              help="--engine ray: CPUs Ray reserves per replica.")
@click.option("--max-ongoing", type=click.IntRange(1, 100_000), default=8, show_default=True,
              help="--engine ray: requests one replica works on at once; Ray queues the rest.")
@click.option("--autoscale", metavar="MIN:MAX",
              help="--engine ray: autoscale between MIN and MAX replicas instead of --replicas.")
@click.option("--ray-address",
              help="--engine ray: a running cluster to deploy to (auto, ray://HEAD:10001); default: start one here.")
@click.option("--ray-object-store-mb", type=click.IntRange(0, 1 << 20), default=256, show_default=True,
              help="--engine ray, a cluster started here: shared memory for Ray's object store (0: Ray's default, "
                   "30 percent of RAM, which fails under an address-space limit).")
@click.option("--ray-batching", type=click.Choice(["ours", "ray"]), default="ours", show_default=True,
              help="--engine ray with --max-batch > 1: ours (as the builtin engine: a lone request never waits) or "
                   "Ray's @serve.batch (waits up to 10 ms for a batch to fill). Measured in "
                   "docs/images-and-scale-out.md.")
@click.option("--require-signature", is_flag=True,
              help="Refuse to start unless every MODEL carries a valid signature (MODEL.sig, from --sign-key when it "
                   "was written) by --key.")
@click.option("--key", "public_key", type=click.Path(path_type=Path),
              help="The Ed25519 public key (PEM) --require-signature trusts.")
@checkpoint_options
def serve(models, host, port, grpc_port, runtime, threads, instances, max_batch, max_body_mb, max_json_mb,
          max_inflight_mb, max_connections,
          header_timeout, body_timeout, min_body_rate, max_header_kb, drain_seconds, verify, engine, replicas,
          cpus_per_replica, max_ongoing, autoscale, ray_address, ray_batching, ray_object_store_mb,
          require_signature, public_key, **opts):
    """Serve MODELS over the Open Inference Protocol (KServe v2, HTTP, binary tensor extension).

    Each MODEL is a plain.pth, an .onnx from export or quantize (served without torch), an OpenVINO IR .xml,
    any checkpoint fold reads (folded and verified at start), or a directory of such files; NAME=PATH sets
    the name (default: the file name without suffixes; two files with the same name, such as q.onnx and
    q.xml, are told apart by their runtime: q and q-openvino, printed at start) and PATH@RUNTIME its runtime,
    so an int8 ONNX and an IR are served side by side with `serve q.onnx q.xml`. Every model is checked
    before the first one loads.

    Endpoints: /v2/health/{live,ready}, /v2, /v2/models/NAME[/ready|/config], POST /v2/models/NAME/infer,
    /metrics; with --grpc-port also inference.GRPCInferenceService (live, ready, metadata, config, infer).
    """
    from ..serving import ServeEvents, ServeRequest
    from ..serving import serve as serve_on

    out, status = console(), err_console()
    if require_signature != (public_key is not None):
        raise click.UsageError("--require-signature and --key go together")
    if max_inflight_mb < max_body_mb:
        raise click.BadParameter(f"{max_inflight_mb:g} is below --max-body-mb {max_body_mb:g}: no request that size "
                                 f"could ever be held", param_hint="--max-inflight-mb")
    limits = ServeLimits(max_body_bytes=int(max_body_mb * 2**20), max_json_bytes=int(max_json_mb * 2**20),
                         max_inflight_bytes=int(max_inflight_mb * 2**20),
                         max_connections=max_connections,
                         header_timeout=header_timeout, body_timeout=body_timeout, drain_seconds=drain_seconds,
                         min_body_rate=min_body_rate, max_header_bytes=int(max_header_kb * 1024))
    request = ServeRequest(list(models), host=host, port=port, grpc_port=grpc_port, runtime=runtime,
                           threads=threads, instances=instances, max_batch=max_batch, limits=limits, verify=verify,
                           load_options=load_options(**opts), signature_key=public_key if require_signature else None,
                           engine_options={"replicas": replicas, "cpus_per_replica": cpus_per_replica,
                                           "max_ongoing": max_ongoing, "autoscale": autoscale,
                                           "address": ray_address, "batching": ray_batching,
                                           "object_store_mb": ray_object_store_mb, "verbose": settings().verbose})
    spinner = status.status("loading ...")

    def loading(name, path):
        spinner.update(escape(f"loading {name} from {path} (checkpoints are folded and verified first) ..."))
        spinner.start()

    def loaded(m):
        spinner.stop()
        verified = m.info.get("verified", "")
        from ..serve.model import max_request_batch

        per_request = max_request_batch(m.input_shape, limits.max_body_bytes)
        batching = (f"requests batched up to {m.max_batch} images" if m.max_batch > 1
                    else "no dynamic batching")
        out.print(f"loaded [bold]{m.name}[/bold]: {escape(str(m.source))} -> input [-1, {', '.join(map(str, m.input_shape))}], "
                  f"{m.num_classes} classes ({m.runtime}, {m.instances.size} instance(s); up to {per_request} images "
                  f"per request (--max-body-mb); {batching} (--max-batch))"
                  + (f"; verified: {verified}" if verified else ""))
        if verified.startswith("no"):
            out.print("[yellow]warning:[/yellow] not verified: nothing proves this graph is a folded chain or that "
                      "it reproduces its source")

    def stopped_while_loading():
        # from a signal handler, mid-load: nothing has been written, so the process ends here (os._exit skips
        # the runtimes' teardown, which could be interrupted mid-call)
        if os.isatty(2):  # the spinner hid the cursor; its thread may hold the console's lock: no rich here
            os.write(2, b"\r\x1b[2K\x1b[?25h")
        if not settings().quiet:
            os.write(1, b"stopped before serving (signal while loading)\n")
        os._exit(0)

    events = ServeEvents(loading=loading, loaded=loaded, status=lambda text: status.status(escape(text)),
                         note=lambda line: out.print(Text(line, style="dim")), started=lambda line: out.print(escape(line)),
                         stopped_while_loading=stopped_while_loading)
    try:
        served = serve_on(engine, request, events)
    finally:
        spinner.stop()
    out.print("stopped" if served else "stopped before serving (signal while loading)")
