"""Model files -> served models: the application step before the server starts.

The server serves artifacts and builds none (`serve.model.ServedModel.from_artifact`). Here each file is
opened as its artifact (`opener.open_artifact`: a checkpoint is folded and verified, a plain.pth
rebuilt), and a PyTorch chain headed for ONNX Runtime or OpenVINO goes through the same verified export as
`dirac-deploy export` (audit and parity check), in memory. An .onnx or an IR is read without torch.
"""

from __future__ import annotations

from typing import Callable

from .artifacts.deployed import read_deployed
from .kinds import kind_of
from .runtimes import engine
from .serve.model import ModelSource, ServedModel, check_sources, parse_model_args


def served_artifact(source: ModelSource, runtime: str, options=None):
    """The artifact `source` is served from on `runtime`: its own for an .onnx, IR, .pte or .tflite; for a
    PyTorch file the verified chain (torch runtime), its verified program (executorch, litert) or its verified
    ONNX export (ONNX Runtime, OpenVINO), in memory."""
    kind = source.kind or kind_of(source.path)
    if not kind.needs_torch:
        return read_deployed(source.path, kind)
    from .artifacts.plain import PlainArtifact  # torch from here on
    from .export.from_file import onnx_artifact
    from .opener import open_artifact

    art = open_artifact(source.path, options, kind=kind)
    assert isinstance(art, PlainArtifact)  # a PyTorch file opens as its chain
    if runtime == "torch":
        return art
    if engine(runtime).lowered:  # an engine of lowered programs: the chain as its verified program
        from .export.program import BY_ENGINE, program_artifact

        return program_artifact(BY_ENGINE[runtime].key, art)
    return onnx_artifact(art)


def load_served_model(source: ModelSource, runtime: str | None = None, threads: int | None = None,
                      options=None, instances: int = 1, max_batch: int = 1, verify: bool = True) -> ServedModel:
    """Open, verify and prepare one model file for serving (`served_artifact`, then
    `ServedModel.from_artifact`): `instances` runners with `threads` intra-op threads each, concurrent requests
    batched up to `max_batch` images. `verify=False` skips an .onnx's audit and probe (an IR's probe)."""
    runtime = runtime or source.runtime or (source.kind or kind_of(source.path)).default_runtime
    art = served_artifact(source, runtime, options)
    return ServedModel.from_artifact(source.name, art, runtime, threads=threads, instances=instances,
                                     max_batch=max_batch, verify=verify)


def verify_signatures(model_args: list[str], runtime: str | None, public_key) -> list[str]:
    """Every model file's detached signature checked against `public_key` (a PEM path or a loaded key), before
    anything loads; one line per model saying whose key signed what.

    Raises:
        SignatureError: an unsigned model, another key's signature, or a file changed since it was signed.
    """
    from .artifacts.signing import fingerprint, load_public_key, verify_signature

    key = load_public_key(public_key) if not hasattr(public_key, "verify") else public_key
    lines = []
    for source in parse_model_args(model_args, runtime):
        record = verify_signature(source.path, key)
        lines.append(f"{source.name}: signature verified ({', '.join(f['name'] for f in record['files'])}, key "
                     f"{fingerprint(key)[:12]})")
    return lines


def load_models(model_args: list[str], runtime: str | None, threads: int | None, options=None,
                on_loaded: Callable[[ServedModel], None] = lambda _m: None, instances: int = 1,
                max_batch: int = 1, verify: bool = True,
                on_loading: Callable[[str, object], None] = lambda _name, _path: None,
                signature_key=None) -> dict[str, ServedModel]:
    """Every model checked first (files, runtimes, dependencies: `check_sources`; with `signature_key`, its
    signature too, again right before it is read), then each loaded on its own runtime (`[NAME=]PATH@RUNTIME`,
    else `runtime`, else the file's default)."""
    models = {}
    key = None
    if signature_key is not None:
        from .artifacts.signing import load_public_key

        key = load_public_key(signature_key)
        verify_signatures(model_args, runtime, key)
    for source in check_sources(parse_model_args(model_args, runtime)):
        if key is not None:
            from .artifacts.signing import verify_signature

            verify_signature(source.path, key)  # again just before the read: a file swapped since is refused
        on_loading(source.name, source.path)
        models[source.name] = load_served_model(source, source.runtime, threads, options, instances, max_batch,
                                                verify)
        if key is not None:  # the banner's "verified:" says it
            from .artifacts.signing import fingerprint

            info = models[source.name].info
            info["verified"] = f"{info.get('verified', 'loaded')}; signature (key {fingerprint(key)[:12]})"
        on_loaded(models[source.name])
    return models


def run(request, events) -> bool:
    """The builtin serving engine (`serving.SERVING_ENGINES["builtin"]`): every model checked, loaded and
    verified, then served by uvicorn (and grpcio with a gRPC port) in this process until SIGTERM or Ctrl-C,
    which drain in-flight requests first (`serve.server.serve_models` owns the signals)."""
    from .serve.server import serve_models

    def load() -> dict[str, ServedModel]:
        return load_models(list(request.models), request.runtime, request.threads, request.load_options,
                           on_loaded=events.loaded, instances=request.instances, max_batch=request.max_batch,
                           verify=request.verify, on_loading=events.loading, signature_key=request.signature_key)

    def started(served, bound) -> None:
        grpc = f" and gRPC {request.host}:{request.grpc_port}" if request.grpc_port else ""
        events.started(f"serving {len(served)} model(s) on http://{request.host}:{bound}/v2{grpc} (Ctrl-C or "
                       f"SIGTERM to stop)")

    return bool(serve_models(load, host=request.host, port=request.port, grpc_port=request.grpc_port,
                             limits=request.limits, on_started=started, on_stopped=events.stopped_while_loading))
