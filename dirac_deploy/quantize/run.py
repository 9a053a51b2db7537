"""MODEL -> a verified low-precision artifact. The library side of `dirac-deploy quantize`.

The fp32 reference is the audited ONNX export of the chain (`export.from_file.verified_onnx`); the artifact
is built from it, compared with it on held-out data (`proof`), and written only when it passes the
thresholds and, timed against the fp32 chain on its own runtime (`speed`), is not slower than
`min_speedup` times it. Precisions, methods and where each runs:

| precision | method | target | artifact |
| --- | --- | --- | --- |
| int8 | identity (default) | onnxruntime | QDQ ONNX of the unit-residual form (`rescale`, `int8`) |
| int8 | naive | onnxruntime | QDQ ONNX from ONNX Runtime's quantize_static defaults |
| int8 | identity (default) / naive / nncf | openvino | OpenVINO IR: the identity-aware QDQ graph, the naive one, or NNCF's own flow |
| fp16 | cast | onnxruntime | fp16 ONNX (fp32 inputs and outputs; onnxconverter-common) |
| bf16 | hint | openvino | OpenVINO IR recording INFERENCE_PRECISION_HINT bf16 |
| fp32 | none | openvino | OpenVINO IR of the fp32 chain |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._optional import require
from ..artifacts.onnx import OnnxArtifact, content_kind
from ..errors import EquivalenceError, OptionError
from ..fileio import check_output_path
from ..runtimes import LOWERED_ENGINES, engine, logits, runtime_ops
from . import DEFAULT_EVAL_LIMIT, DEFAULT_MIN_SQNR_DB
from .data import DEFAULT_CROP_FRACTION, Dataset
from .int8 import FP32
from .layer_table import LAYER_TABLE_IMAGES, chain_names, conv_errors, label_runtime_precision, renamed_note
from .proof import DEFAULT_MAX_ACCURACY_DROP, DEFAULT_MIN_AGREEMENT, LayerError, LowPrecisionProof, logits_proof
from .proof_data import check_data_options, load_proof_data, plan_data
from .registry import DEFAULT_METHOD, DEFAULT_TARGET, RECIPES
from .speed import DEFAULT_MIN_SPEEDUP, REFUSED, UNDECIDED, Timer, faster_alternative, measure_speed
from .write import fp32_program, write_artifact

# The unit of every number in the quantize report whose name does not carry it (docs/reports.md).
QUANTIZE_UNITS = {"agreement": "fraction of images, 0..1", "accuracy": "fraction of images, 0..1",
                  "accuracy_fp32": "fraction of images, 0..1", "accuracy_drop": "percentage points",
                  "max_accuracy_drop": "percentage points", "min_agreement": "fraction of images, 0..1",
                  "speedup / iqr / rounds": "t_fp32 / t_artifact: above 1, the artifact is faster"}


class SlowerThanFp32Error(EquivalenceError):
    """The artifact is proven accurate but runs slower than the fp32 chain it would replace."""


class NothingInInt8Error(EquivalenceError):
    """An int8 artifact in which no conv runs in int8: slower or no faster than fp32, and named wrongly."""


def _refuse_int8_free(art, features) -> None:
    """Refuse an "int8" artifact whose runtime runs no conv in int8 (or, for TensorRT, whose plan kept every
    conv in fp32): it is an fp32 model with extra nodes."""
    if art.precision != "int8":
        return
    layers = art.proof.layers
    if art.target == "tensorrt":
        if layers and all(la.form == FP32 for la in layers):
            raise NothingInInt8Error(f"nothing would run in int8: every conv stayed in fp32 to keep the logits at "
                                     f"{art.proof.logit_sqnr_db:.1f} dB; use `precision='fp16'` or the fp32 ONNX "
                                     f"(dirac-deploy export); nothing written")
        return
    conv = (art.proof.runtime_ops or {}).get("conv") or {}
    if conv and conv.get("int8", 0) == 0:
        runs = ", ".join(f"{n} in {p}" for p, n in conv.items() if n)
        raise NothingInInt8Error(f"nothing runs in int8: {art.target} runs every conv of this artifact in another "
                                 f"precision on this CPU ({runs}; {features.describe()}): use `precision='bf16'` or "
                                 f"`precision='fp32'`, or `method='nncf'`; nothing written")


class UndecidedSpeedError(EquivalenceError):
    """The speed proof could not decide: the per-round speed-ups straddle --min-speedup after every round
    allowed. Nothing was written; exit status 3, so a script can tell "too noisy" from "slower"."""

    exit_code = 3

COMBINATIONS = set(RECIPES)  # (precision, method, target) this tool builds: quantize.registry
# Below this a low-precision artifact's logits are mostly noise even when top-1 still agrees (15 dB: the error's
# RMS is 18% of the logits'); the measured artifacts are at 19-33 dB (int8) and 60+ dB (fp16). --min-sqnr-db 0 or
# lower turns it off.
# DEFAULT_MIN_SQNR_DB and DEFAULT_EVAL_LIMIT (images the proof runs on at most, the first ones: one disagreement
# is 0.05%) live in the package's import-free __init__, which the command line reads.


@dataclass
class Artifact:
    precision: str
    method: str
    target: str
    model: Any  # onnx.ModelProto or openvino.Model (imported where used)
    proof: LowPrecisionProof
    int8_types: str | None = None

    @property
    def is_onnx(self) -> bool:
        return self.target != "openvino"


@dataclass
class QuantizeReport:
    model: Path
    architecture: str
    artifact: Artifact
    calibration: str
    written: list[Path]
    cpu: dict = field(default_factory=dict)  # `cpuinfo.CpuFeatures.to_dict()` of the machine that proved it

    @property
    def fp32_layers(self) -> int:
        return sum(layer.form == FP32 for layer in self.artifact.proof.layers)

    def to_json(self) -> dict:
        a = self.artifact
        # version 4: `units`, and speed rows with their per-round `rounds` and `decision`
        return {"schema": "dirac-deploy/quantize", "version": 4, "units": QUANTIZE_UNITS, "model": str(self.model),
                "architecture": self.architecture, "precision": a.precision, "method": a.method,
                "target": a.target, "int8_types": a.int8_types, "calibration": self.calibration,
                "convs": len(a.proof.layers), "convs_fp32": self.fp32_layers, "cpu": self.cpu,
                "proof": a.proof.to_dict(), "written": [str(p) for p in self.written]}


def check_combination(precision: str, method: str | None, target: str) -> None:
    """`method` None: the user gave none (the message then does not name the default it would have taken)."""
    if method is None:
        if (precision, target) not in DEFAULT_METHOD:
            built = sorted({t for p, _, t in COMBINATIONS if p == precision})
            raise OptionError(f"`precision` {precision} `target` {target} is not built; {precision} is built for "
                              f"`target` {' or '.join(built)}")
        return
    if (precision, method, target) not in COMBINATIONS:
        raise OptionError(f"`precision` {precision} `method` {method} `target` {target} is not built; choose one of "
                          + ", ".join(f"{p}/{m}/{t}" for p, m, t in sorted(COMBINATIONS)))


def build_artifact(fp32, precision: str, method: str, target: str, calib: Dataset, evaluation: Dataset, *,
                   min_agreement: float = DEFAULT_MIN_AGREEMENT, max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
                   min_sqnr_db: float | None = None, layer_table: bool = True, ref: np.ndarray | None = None,
                   chain=None) -> Artifact:
    """Build the artifact from the fp32 ONNX `fp32` (or, for a recipe built from PyTorch, the chain `chain`)
    and prove it on `evaluation` (nothing is written). `ref`: fp32 logits on `evaluation` when the caller
    already has them (several artifacts, one reference).

    Raises:
        OptionError: a combination this tool does not build, or bf16 on a CPU that cannot run it.
    """
    check_combination(precision, method, target)
    if ref is None:
        ref = logits("onnxruntime", fp32, evaluation.x)
    kw = dict(precision=precision, method=method, data=evaluation.source, min_agreement=min_agreement,
              max_accuracy_drop=max_accuracy_drop, min_sqnr_db=min_sqnr_db)
    recipe = RECIPES[(precision, method, target)]
    if recipe.source == "chain" and chain is None:
        raise OptionError(f"{target} programs are lowered from the PyTorch chain, and an .onnx has none: give the "
                          f"plain.pth or the checkpoint")
    built = recipe.build(chain if recipe.source == "chain" else fp32, calib.x, evaluation.x)
    model, got, plans, types, notes = built.model, built.logits, built.plans, built.int8_types, built.notes
    proof = logits_proof(ref, got, evaluation.labels, **kw)
    proof.notes += notes
    if types:
        proof.notes.append(f"int8 types {types} (activations, weights; {_why_types(types, target)})")
    if precision == "int8" and target != "tensorrt":
        proof.runtime_ops = runtime_ops(target, model)
        conv = proof.runtime_ops["conv"]
        rest = ", ".join(f"{n} in {p}" for p, n in conv.items() if p != "int8" and n)
        proof.notes.append(f"{conv.get('int8', 0)} of {sum(conv.values())} convs run in int8{f' ({rest})' if rest else ''}, "
                           f"counted in {target}'s optimized graph")
    if layer_table and plans is not None and built.qdq is not None:
        # every conv output of every image is held at once: a diagnostic needs a few dozen, not the whole set
        proof.layers = conv_errors(built.reference, built.qdq, plans, evaluation.x[:LAYER_TABLE_IMAGES])
    elif plans is not None:
        proof.layers = [LayerError(p.name, p.form, None, p.weight_sqnr_db.get(p.form), p.identity_dominance)
                        for p in plans]
    elif built.layers:
        proof.layers = built.layers
    if proof.runtime_ops:
        label_runtime_precision(proof.layers, proof.runtime_ops["conv"])
    return Artifact(precision, method, target, model, proof, types)


def _why_types(types: str, target: str) -> str:
    if target == "tensorrt":
        return "TensorRT takes symmetric s8 only; Q/DQ on both inputs of each residual Add"
    if types == "s8s8":
        return "ONNX Runtime's quantize_static default"
    if target == "openvino" and types == "u8s7":
        return ("this CPU has no VNNI: OpenVINO's u8 x s8 convs would saturate at 8-bit weights, so they take 7 "
                "bits")
    if target == "openvino":
        return "OpenVINO's CPU plugin multiplies u8 activations by s8 weights natively"
    return "this CPU has VNNI" if types == "u8s8" else "this CPU has no VNNI: u8 x s8 would saturate"


# what each target writes (the rest: .onnx); an edge runtime writes its own program (`export.program.LOWERINGS`)
TARGET_SUFFIX = {"openvino": ".xml", "executorch": ".pte", "litert": ".tflite"}


def quantize_file(model_path: str | Path, output: str | Path, *, precision: str = "int8", method: str | None = None,
                  target: str | None = None, calib: str | None = None, evaluation: str | None = None, options=None,
                  min_agreement: float = DEFAULT_MIN_AGREEMENT, max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
                  min_sqnr_db: float | None = DEFAULT_MIN_SQNR_DB, calib_limit: int = 256,
                  eval_limit: int = DEFAULT_EVAL_LIMIT,
                  crop_fraction: float = DEFAULT_CROP_FRACTION, min_speedup: float = DEFAULT_MIN_SPEEDUP,
                  speed_batch: int = 1, threads: int | None = None, timer: Timer | None = None,
                  progress: Callable[[str], None] = lambda _step: None) -> QuantizeReport:
    """Read MODEL (a checkpoint, plain.pth or .onnx from export), build the low-precision artifact, prove it on
    held-out data, and write OUTPUT (.onnx, or .xml + .bin for OpenVINO) only if the proof passes.

    `calib` None: the bundled models' own data ('embedded'); any other model must be given some. `evaluation`
    None: the bundled models' held-out split, disjoint random images for `random[:N]`, else a seeded quarter
    of `calib` held out from calibration. Every option and data source is checked before the model is folded
    or exported. The evaluation set must hold at least `min_eval_images(min_agreement)` images, and may not
    be the calibration data. `target` None: OpenVINO for an .xml OUTPUT, ONNX Runtime for an .onnx one.

    Then the artifact is timed against the fp32 chain on its runtime (`speed.measure_speed`, at batch 1 and
    `speed_batch`, `threads` threads; `timer` replaces the clock in tests) and refused when slower than
    `min_speedup` times fp32 at any batch (0: never refused; the proof still records the times).

    Raises:
        OptionError: bad combination, data or thresholds. EquivalenceError: the proof failed (nothing written).
        SlowerThanFp32Error: the speed proof failed (nothing written).
        MissingDependencyError: onnxruntime, openvino or nncf missing for what was asked.
    """
    from ..artifacts.plain import PlainArtifact
    from ..cpuinfo import cpu_features
    from ..export.from_file import verified_onnx
    from ..opener import open_artifact, read_model_file

    model_path, output = Path(model_path), Path(output)
    if precision not in DEFAULT_TARGET:
        raise OptionError(f"unknown `precision` {precision!r}; choose int8, fp16, bf16 or fp32")
    target = target or {".onnx": "onnxruntime", **{s: t for t, s in TARGET_SUFFIX.items()}}.get(
        output.suffix, DEFAULT_TARGET[precision])
    check_combination(precision, method, target)
    method = method or DEFAULT_METHOD[(precision, target)]
    _check_thresholds(min_agreement, max_accuracy_drop, min_sqnr_db, min_speedup, speed_batch, crop_fraction)
    suffix = TARGET_SUFFIX.get(target, ".onnx")
    if output.suffix != suffix:
        hint = ""
        if output.suffix == ".onnx" and target == "openvino":
            hint = f"; for ONNX Runtime use `target='onnxruntime'`{'' if precision != 'bf16' else ' (bf16 is OpenVINO only)'}"
        raise OptionError(f"a {target} artifact is written as {suffix}, got {output.name}{hint}")
    data_files = [Path(d) for d in (calib, evaluation) if d and Path(d).exists()]
    check_output_path(output, model_path, *data_files)
    if target == "openvino":
        check_output_path(output.with_suffix(".bin"), model_path, *data_files)
        require("openvino")
        if method == "nncf":
            require("nncf")
    if target in LOWERED_ENGINES:
        require(engine(target).package)
    require("onnxruntime")
    check_data_options(calib, evaluation)
    source = read_model_file(model_path, options)  # read once: the data plan and the fold both use it
    plan = plan_data(model_path.name, calib, evaluation, source.source_sha256)
    progress(f"loading {model_path.name} (a checkpoint is folded and verified first)")
    loaded = open_artifact(source, options)
    if not isinstance(loaded, (PlainArtifact, OnnxArtifact)):  # an IR or a program: already deployed
        raise OptionError(f"{model_path} is {loaded.kind.description}, already a deployed artifact; quantize starts "
                          f"from a checkpoint, a plain.pth or an .onnx from export")
    if RECIPES[(precision, method, target)].source == "chain" and not isinstance(loaded, PlainArtifact):
        raise OptionError(f"{target} programs are lowered from the PyTorch chain, and {model_path.name} is "
                          f"{loaded.kind.description}: give the plain.pth or the checkpoint")
    if isinstance(loaded, OnnxArtifact) and content_kind(loaded.model) == "quantized":
        raise OptionError(f"{model_path} is already quantized (its convs take int8 or fp16 weights); quantize starts "
                          f"from the fp32 chain: a checkpoint, a plain.pth or an .onnx from export")
    progress("reading the calibration and evaluation data")
    cal, ev, notes = load_proof_data(plan, loaded, min_agreement=min_agreement, calib_limit=calib_limit,
                                     eval_limit=eval_limit, crop_fraction=crop_fraction)
    progress("exporting the fp32 chain (audited, parity-checked)")
    fp32 = verified_onnx(loaded).model
    progress(f"building {precision} ({method}, {target}) and proving it on {len(ev)} images")
    chain = getattr(loaded, "plain", None)
    art = build_artifact(fp32, precision, method, target, cal, ev, min_agreement=min_agreement,
                         max_accuracy_drop=max_accuracy_drop, min_sqnr_db=min_sqnr_db, chain=chain)
    art.proof.notes[:0] = notes
    features = cpu_features()
    art.proof.notes.append(f"proved on {features.model} ({features.describe()})")
    renamed = chain_names(art.proof.layers, getattr(loaded, "plain", None))
    art.proof.notes = [renamed_note(n, renamed) for n in art.proof.notes]
    _refuse_int8_free(art, features)
    if not art.proof.ok:
        worst = ", ".join(f"{layer.name} {layer.output_sqnr_db:.1f} dB ({layer.form})" for layer in art.proof.worst_layers())
        raise EquivalenceError(f"the {precision} artifact misses its thresholds ({'; '.join(art.proof.failures)}): "
                               f"{art.proof.describe()}; nothing written."
                               + (f" Layers losing the most: {worst}" if worst else ""))
    if target == "tensorrt":
        art.proof.speed = {"status": "not timed: TensorRT cannot run here; time the engine where it runs "
                                     "(trtexec --loadEngine=MODEL.plan)"}
    elif precision != "fp32":  # an fp32 IR is a format, not an optimization: nothing to be faster than
        # the reference runs on the artifact's runtime: the fp32 graph, or for a program the fp32 program
        reference = fp32 if target not in LOWERED_ENGINES else fp32_program(target, chain, loaded.input_shape)
        _prove_speed(art, reference, loaded.input_shape, features, min_speedup=min_speedup, speed_batch=speed_batch,
                     threads=threads, timer=timer, progress=progress)
    progress("writing")
    written = write_artifact(art, output, loaded)
    calibrated = cal.source if precision == "int8" else f"none ({precision} is not calibrated)"
    return QuantizeReport(model_path, loaded.name, art, calibrated, written, features.to_dict())


def _check_thresholds(min_agreement: float, max_accuracy_drop: float, min_sqnr_db: float | None,
                      min_speedup: float, speed_batch: int, crop_fraction: float) -> None:
    """The proof's thresholds in range, before anything is read."""
    if not 0 <= min_agreement <= 1 or not 0 <= max_accuracy_drop <= 100:
        raise OptionError("`min_agreement` must be in 0..1 and `max_accuracy_drop` in 0..100 (points)")
    if min_sqnr_db is not None and not math.isfinite(min_sqnr_db):
        raise OptionError(f"`min_sqnr_db` must be a finite number of dB, got {min_sqnr_db}")
    if not math.isfinite(min_speedup) or min_speedup < 0 or speed_batch < 1:
        raise OptionError(f"`min_speedup` must be a finite number >= 0 (got {min_speedup}) and `speed_batch` >= 1 "
                          f"(got {speed_batch})")
    if not 0.1 <= crop_fraction <= 1:
        raise OptionError(f"`crop_fraction` must be in 0.1..1, got {crop_fraction}")


def _prove_speed(art: Artifact, fp32, input_shape, features, *, min_speedup: float, speed_batch: int,
                 threads: int | None, timer: Timer | None, progress: Callable[[str], None]) -> None:
    """Time the artifact against the fp32 chain on its runtime (`speed`), record it in the proof, refuse when
    slower than `min_speedup` times fp32 at any batch."""
    batches = tuple(dict.fromkeys((1, speed_batch)))
    progress(f"timing it against the fp32 chain on {art.target} (batch {', '.join(map(str, batches))})")
    speed = measure_speed(art.model, fp32, target=art.target, precision=art.precision, input_shape=input_shape,
                          batches=batches, threads=threads, min_speedup=min_speedup, timer=timer)
    art.proof.speed = speed.to_dict()
    if speed.decision == REFUSED:
        slow = next(r for r in speed.rows if r.decision == REFUSED)
        raise SlowerThanFp32Error(
            f"the {art.precision} artifact ({art.method}, {art.target}) runs {slow.speedup:.2f}x {speed.reference} at "
            f"{slow.describe()}, {speed.threads} threads, {features.describe()}: even the rounds' upper quartile "
            f"is below `min_speedup` {min_speedup:g}; nothing written. "
            f"{faster_alternative(art.precision, art.target)}; `min_speedup=0` writes it anyway")
    if speed.decision == UNDECIDED:
        row = next(r for r in speed.rows if r.decision == UNDECIDED)
        raise UndecidedSpeedError(
            f"undecided: the machine is too noisy to tell whether the {art.precision} artifact ({art.method}, "
            f"{art.target}) reaches `min_speedup` {min_speedup:g}: {row.describe()}, the quartiles on both sides "
            f"of it after {len(row.rounds)} rounds; nothing written. Run again on a quieter machine (or with "
            f"fewer `threads`), or `min_speedup=0` to write it anyway")
