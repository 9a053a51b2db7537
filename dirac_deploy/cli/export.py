"""`dirac-deploy export`."""

from __future__ import annotations

from pathlib import Path

import click

from ..export import DEFAULT_OPSET, MAX_PARITY_BATCH
from ..export.targets import TARGETS
from .options import checkpoint_options, load_options
from .render import (
    check_json_path,
    console,
    emit_json,
    json_option,
    kv_table,
    outputs_with_report,
    progress_status,
    sign_option,
    sign_written,
)


def _histogram(nodes: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in nodes.items())


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), help="Write the folded model as ONNX here.")
@click.option("--unfolded", is_flag=True,
              help="Also export the model as trained (no folding, no simplification) to <onnx>.unfolded.onnx.")
@click.option("--trt", "trt_path", type=click.Path(path_type=Path), help="Build a TensorRT engine (.plan) here.")
@click.option("--fp16", is_flag=True, help="Build the TensorRT engine from an fp16 ONNX (weights scanned first); "
                                           "needs --trt. For low-precision ONNX see `dirac-deploy quantize`.")
@click.option("--workspace-mb", type=click.IntRange(16, 1 << 20), default=1024, show_default=True,
              help="TensorRT builder workspace limit.")
@click.option("--triton-repo", type=click.Path(path_type=Path), help="Write a Triton model repository here.")
@click.option("--name", help="Model name in the Triton repository [default: MODEL's file name without suffixes].")
@click.option("--pte", "pte_path", type=click.Path(path_type=Path),
              help="Write an ExecuTorch program (XNNPACK, fp32, batch 1) here; needs the [executorch] extra.")
@click.option("--tflite", "tflite_path", type=click.Path(path_type=Path),
              help="Write a LiteRT program (XNNPACK, fp32, batch 1) here; needs the [litert] extra.")
@click.option("--allow-partial-delegation", is_flag=True,
              help="Write the .pte / .tflite even when XNNPACK leaves ops to the runtime's slower own kernels.")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True,
              help="ONNX opset (one the torch.onnx exporter writes; >= 18).")
@click.option("--batch-range", default="1:8:32", show_default=True,
              help="MIN:OPT:MAX batch sizes: TensorRT profile, Triton max_batch_size, parity check at 1 and OPT "
                   f"(at most {MAX_PARITY_BATCH}).")
@json_option
@sign_option
@checkpoint_options
def export(model, onnx_path, unfolded, trt_path, fp16, workspace_mb, triton_repo, name, pte_path, tflite_path,
           allow_partial_delegation, opset, batch_range, json_path, sign_key, **opts):
    """Export MODEL (a plain.pth from fold, any checkpoint fold reads, or an .onnx from export) to ONNX,
    TensorRT, a Triton model repository, an ExecuTorch program and a LiteRT program.

    The ONNX graph is checked (onnx.checker, strict shape inference), simplified (onnxsim), audited (only
    Conv, Relu, MaxPool, global pooling, Flatten/Reshape and Gemm may remain, plus NCReLU's ops for v1 nets)
    and run in ONNX Runtime against the PyTorch model at batch 1 and OPT. An ExecuTorch program must be fully
    delegated to XNNPACK and is run by ExecuTorch's own runtime against the PyTorch chain before it is written; a
    LiteRT program likewise, in LiteRT's interpreter.
    Every output is validated first and all are written together or not at all.
    """
    from ..export.from_file import export_file
    from ..export.tensorrt import BatchRange

    check_json_path(json_path, model, onnx_path, trt_path, triton_repo, pte_path, tflite_path, sign_key)
    status, progress = progress_status(f"exporting {model} ...")
    with outputs_with_report(json_path, sign_key):  # every artifact, its signature and the report: all or none
        with status:
            r = export_file(model, onnx_path, unfolded=unfolded, trt_path=trt_path, triton_repo=triton_repo,
                            name=name, opset=opset, batch_range=BatchRange.parse(batch_range),
                            workspace_mb=workspace_mb, fp16=fp16, options=load_options(**opts), progress=progress,
                            outputs={k: p for k, p in (("pte", pte_path), ("tflite", tflite_path)) if p},
                            target_options={k: {"allow_partial": allow_partial_delegation} for k in ("pte", "tflite")})
        r.written.extend(sign_written(sign_key, r.written))
        to_stdout = emit_json(json_path, r.to_json())
    if to_stdout:
        return
    o = r.onnx
    rows = [("model", f"{r.model} ({r.source})"), ("architecture", r.architecture), ("opset", str(o.opset)),
            ("folded graph", f"{o.folded.node_count} nodes: {_histogram(o.folded.nodes)}")]
    if o.unfolded is not None:
        rows.append(("unfolded graph", f"{o.unfolded.node_count} nodes: {_histogram(o.unfolded.nodes)}"))
    rows.append(("audit", "passed: nothing but the chain's layers is left"))
    for p in o.folded.parity:
        rows.append((f"ORT parity b={p.batch}", f"max abs {p.max_abs_error:.3g} ({p.max_rel_error:.3g} of max|logit|), "
                                               f"top-1 {p.top1_agreement:.0%} vs the {p.reference}"))
    if r.fp16_findings is not None:
        if not r.fp16_findings:
            rows.append(("fp16 scan", "all folded weights are normal fp16 numbers"))
        for f in r.fp16_findings:
            rows.append(("fp16 scan", f"{f.tensor}: {f.overflow} overflow, {f.subnormal} subnormal of {f.numel} "
                                      f"(max |w| {f.max_abs:.3g})"))
    if r.engine is not None:
        e = r.engine
        rows.append(("TensorRT", f"{e.path} ({e.size_bytes:,} bytes, TensorRT {e.tensorrt_version}, batch "
                                 f"{e.batch_range.min}:{e.batch_range.opt}:{e.batch_range.max})"))
    for t in r.triton:
        rows.append(("Triton", f"{t.config_path.parent} ({t.platform})"))
    for key, made in r.made.items():
        rows.append((TARGETS[key].description.split(" (")[0], made["summary"]))
    for path in r.written:
        rows.append(("wrote", str(path)))
    console().print(kv_table(f"Exported {r.architecture}", rows))
