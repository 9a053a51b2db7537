"""`dirac-deploy quantize`."""

from __future__ import annotations

from pathlib import Path

import click

from ..quantize import (
    DEFAULT_CROP_FRACTION,
    DEFAULT_EVAL_LIMIT,
    DEFAULT_MIN_SPEEDUP,
    DEFAULT_MIN_SQNR_DB,
    METHODS,
    PRECISIONS,
    TARGETS,
)
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
from .tables import print_quantize_layers
from .wording import worded


def _speed(speed: dict) -> str:
    """The numbers that decided: per batch the median of per-round speed-ups, their quartiles and the rounds'
    count, the decision, and the p50 latencies (a ratio of medians is not the median of ratios)."""
    from ..quantize.speed import SpeedRow

    if "rows" not in speed:
        return speed["status"]
    rows = "; ".join(SpeedRow(**r).describe() for r in speed["rows"])
    return f"{rows}; against fp32 on {speed['runtime']}, {speed['threads']} threads"


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The artifact: .xml (+ .bin beside it) for openvino, .onnx for onnxruntime and tensorrt, .pte for "
                   "executorch, .tflite for litert.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="int8", show_default=True)
@click.option("--method", type=click.Choice(METHODS),
              help="int8: identity (keeps the folded Dirac identity exact; the default), projection (edge "
                   "programs: the diagonal as its own 1x1 conv, activations equalized), naive (ONNX Runtime's "
                   "quantize_static defaults), nncf (OpenVINO's own flow, --target openvino). fp16: cast. "
                   "bf16: hint. fp32: none.")
@click.option("--target", type=click.Choice(TARGETS),
              help="Runtime the artifact is for [default: from -o: openvino for .xml, onnxruntime for .onnx, "
                   "executorch for .pte, litert for .tflite].")
@click.option("--calib",
              help="Calibration data: random[:N] (seeded N(0,1) images, for random-weight nets), a .npz/.npy "
                   "file, or a directory of images; embedded: the bundled models' own [default: embedded for "
                   "the bundled models; required for any other].")
@click.option("--eval", "evaluation",
              help="Held-out data the proof runs on (same forms; labels give accuracy) [default: the bundled "
                   "models' held-out split; for random calibration, other random images; else a seeded quarter "
                   "of --calib, held out from calibration]. Never the calibration images.")
@click.option("--crop-fraction", type=click.FloatRange(0.1, 1.0), default=DEFAULT_CROP_FRACTION, show_default=True,
              help="uint8 images not at the input size: shorter side resized to size / this, then a centre crop "
                   "(torchvision Resize(256) + CenterCrop(224) at 0.875; 1.0: no margin).")
@click.option("--calib-limit", type=click.IntRange(1, 100_000), default=256, show_default=True,
              help="Use at most this many calibration images (the first ones).")
@click.option("--eval-limit", type=click.IntRange(1, 100_000), default=DEFAULT_EVAL_LIMIT, show_default=True,
              help="Prove on at most this many evaluation images (the first ones).")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="Refuse below this top-1 agreement with the fp32 chain.")
@click.option("--max-accuracy-drop", type=click.FloatRange(0, 100), default=0.5, show_default=True,
              help="Refuse above this accuracy drop, in percentage points (when --eval has labels).")
@click.option("--min-sqnr-db", type=float, default=DEFAULT_MIN_SQNR_DB, show_default=True,
              help="Refuse below this logit SQNR (dB) against fp32 (0 or less: no floor).")
@click.option("--min-speedup", type=click.FloatRange(0, 1000), default=DEFAULT_MIN_SPEEDUP, show_default=True,
              help="Refuse an artifact slower than this times the fp32 chain on its own runtime (timed at batch 1 "
                   "and --speed-batch, a few seconds); 0: write it anyway.")
@click.option("--speed-batch", type=click.IntRange(1, 256), default=8, show_default=True,
              help="The second batch size the speed proof times (besides 1).")
@click.option("--threads", type=click.IntRange(1, 1024),
              help="Threads for the speed proof, both sides [default: one per CPU].")
@json_option
@sign_option
@checkpoint_options
def quantize(model, output, precision, method, target, calib, evaluation, crop_fraction, calib_limit, eval_limit,
             min_agreement, max_accuracy_drop, min_sqnr_db, min_speedup, speed_batch, threads, json_path, sign_key,
             **opts):
    """Write a low-precision artifact of MODEL (a checkpoint, plain.pth or .onnx from export), proven first.

    The artifact is built from the audited fp32 ONNX of the folded chain and compared with it on the --eval
    images: top-1 agreement, accuracy where labels exist, logit SQNR and, for int8, each conv output's SQNR
    and how many convs the runtime really runs in int8. Below the thresholds nothing is written and the layers that lose the most are named.
    Every option and data source is checked before the model is folded or exported.

    Data: a .npz holds `x` or `images` (uint8 [N,H,W,C] / [N,C,H,W] in 0..255, or preprocessed float32
    [N,C,H,W]) and optionally `labels`; a directory holds images, or one subdirectory per class whose
    sorted names are labels 0..K-1 (torchvision's ImageFolder). uint8 images are resized and centre-cropped
    (--crop-fraction), scaled to 0..1 and normalized with the mean/std the model records.

    Identity-aware int8 (the default): a folded DiracNet kernel is diag(c) delta + R, and per-channel int8
    set by the diagonal erases the learned part R of wide layers. The chain is rescaled per channel (exact:
    ReLU and pooling commute with positive scales) so each such layer runs as conv(x, R/c) + x, the int8
    residual pattern runtimes fuse: only R is quantized, the identity stays exact; while the logits on the
    calibration images stay below 25 dB, the layer that loses the most (often the stem) moves to fp32. `inspect --layers` shows each layer's identity dominance.

    Speed: the artifact is timed against the fp32 chain on its own runtime before it is written and refused
    when slower (--min-speedup). int8 is fastest in OpenVINO (-o q.xml).
    """
    from ..quantize.run import quantize_file

    check_json_path(json_path, model, output, output.with_suffix(".bin"), calib, evaluation, sign_key)
    status, progress = progress_status(f"quantizing {model} ...")
    with outputs_with_report(json_path, sign_key):  # the artifact, its signature and the report: all or none
        with status:
            r = quantize_file(model, output, precision=precision, method=method, target=target, calib=calib,
                              evaluation=evaluation, options=load_options(**opts), min_agreement=min_agreement,
                              max_accuracy_drop=max_accuracy_drop,
                              min_sqnr_db=None if min_sqnr_db <= 0 else min_sqnr_db, calib_limit=calib_limit,
                              crop_fraction=crop_fraction, eval_limit=eval_limit, min_speedup=min_speedup,
                              speed_batch=speed_batch, threads=threads, progress=progress)
        r.written.extend(sign_written(sign_key, r.written))
        to_stdout = emit_json(json_path, r.to_json())
    if to_stdout:
        return
    a, p = r.artifact, r.artifact.proof
    rows = [("model", str(r.model)), ("architecture", r.architecture),
            ("artifact", f"{a.precision}, method {a.method}, for {a.target}"
                         + (f" ({a.int8_types})" if a.int8_types else "")),
            *([("calibration", r.calibration)] if a.precision == "int8" else []),  # casts and hints calibrate nothing
            ("proof", p.describe()),
            *([("speed", _speed(p.speed))] if p.speed else []),
            *([("convs", f"{len(p.layers)}, of which {r.fp32_layers} stay fp32")] if p.layers else []),
            ("thresholds", f"agreement >= {p.min_agreement:.2%}, accuracy drop <= {p.max_accuracy_drop:g} points"
                           + (f", SQNR >= {p.min_sqnr_db:g} dB" if p.min_sqnr_db is not None else ""))]
    rows += [("note", worded(n)) for n in p.notes]
    rows += [("wrote", str(w)) for w in r.written]
    console().print(kv_table(f"Quantized {r.architecture}", rows))
    if p.layers:
        print_quantize_layers(console(), p.layers)
