"""The exported ONNX artifact: what its graph may contain (the audit), its I/O contract and provenance.

Imports onnx and numpy only (no torch), so a server that only serves `.onnx` files runs without PyTorch.
The parity probe makes an exported file checkable without its source: `export` runs seeded inputs through
the PyTorch chain and stores the logits in the file; a loader re-runs them in ONNX Runtime and compares.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import runtimes
from ..errors import CheckpointError, EquivalenceError, ExportError, first_line
from ..kinds import KINDS, ArtifactKind
from ..proof import DEFAULT_RTOL, Proof, compare_logits
from ..runtimes import Runner
from ..spec import INPUT_NAME, OUTPUT_NAME
from .digest import ONNX_CONTENT_KEY, check_content, onnx_content_sha256
from .provenance import PROBE, PROBE_RTOL, Provenance, metadata_value

# Everything a folded DiracNet may contain. BatchNormalization, Mul/Div/Add (the Dirac parameterization),
# ReduceL2 (normalize) and friends mean something was not folded.
ALLOWED_OPS = frozenset({"Conv", "Relu", "MaxPool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Gemm"})

# Ops a chain layer may legitimately export to beyond the base set (dynamo exporter + onnxsim).
LAYER_OPS = {"ncrelu": frozenset({"Max", "Min", "Clip", "Concat", "Neg"}), "leaky_relu": frozenset({"LeakyRelu"})}

# What each kind of graph this project writes may hold, by its `dirac_deploy.graph` metadata.
GRAPH_OPS = {
    "folded": ALLOWED_OPS | LAYER_OPS["ncrelu"] | LAYER_OPS["leaky_relu"],
    # Low-precision artifacts (see `quantize`): quantize/dequantize pairs, casts, and the identity-aware
    # int8 form's exact residual path (a per-channel scaled add of the layer input).
    "quantized": ALLOWED_OPS | LAYER_OPS["ncrelu"] | LAYER_OPS["leaky_relu"]
    | frozenset({"QuantizeLinear", "DequantizeLinear", "Cast", "Add", "Mul", "Slice", "Pad"}),
}

# The parity probe's tolerance for a low-precision graph (its kernels differ a little between CPUs). Decided
# here, from what the graph holds; a file's own `probe_rtol` metadata may only make it stricter.
LOW_PRECISION_PROBE_RTOL = 0.05
_QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_LOW_PRECISION_TYPES = (10, 16)  # TensorProto.FLOAT16, TensorProto.BFLOAT16


def live_nodes(model) -> list:
    """The nodes the graph's outputs depend on, in graph order (an unused node or tensor changes nothing the
    graph computes, so it never decides what kind of graph this is)."""
    producer = {out: n for n in model.graph.node for out in n.output}
    needed, seen, live = [o.name for o in model.graph.output], set(), set()
    while needed:
        name = needed.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is not None and id(node) not in live:
            live.add(id(node))
            needed.extend(i for i in node.input if i)
    return [n for n in model.graph.node if id(n) in live]


def content_kind(model) -> str:
    """What the graph computes, from its structure alone: "quantized" when a live Conv or Gemm takes its weight
    through a DequantizeLinear (int8) or as an fp16/bf16 tensor (directly or through a Cast), else "folded".
    Never read from metadata, which an edited file could set to anything, nor from an unused tensor or node:
    an fp32-shaped graph with a stray fp16 initializer or a Q/DQ pair on its logits is still fp32-shaped, and
    gets the fp32 audit and tolerance."""
    nodes = live_nodes(model)
    producer = {out: n for n in nodes for out in n.output}
    low = {t.name for t in model.graph.initializer if t.data_type in _LOW_PRECISION_TYPES}

    def low_precision(name: str, depth: int = 0) -> bool:
        if name in low:
            return True
        node = producer.get(name)
        if node is None or depth > 4:
            return False
        if node.op_type == "DequantizeLinear":
            return True
        if node.op_type == "Cast":  # fp16 weights reach a float conv through Cast(to=float)
            return any(low_precision(i, depth + 1) for i in node.input[:1])
        return False

    weighted = [n for n in nodes if n.op_type in ("Conv", "Gemm") and len(n.input) > 1]
    return "quantized" if any(low_precision(n.input[1]) for n in weighted) else "folded"


def narrowed_rtol(tool_rtol: float, recorded: str | None) -> float:
    """The tool's tolerance, or the file's recorded one when that is stricter (a finite positive number)."""
    try:
        value = float(recorded) if recorded else None
    except ValueError:
        value = None
    return min(tool_rtol, value) if value is not None and 0 < value < float("inf") else tool_rtol


def allowed_ops(layer_kinds) -> frozenset[str]:
    """The base set plus what the chain's NCReLU / LeakyReLU layers export to, if it has any."""
    extra = frozenset().union(*(LAYER_OPS.get(k, frozenset()) for k in layer_kinds))
    return ALLOWED_OPS | extra


def op_histogram(model) -> dict[str, int]:
    """Node counts per op type, most frequent first."""
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def audit_violations(model, allowed: frozenset[str] = ALLOWED_OPS) -> list[str]:
    """`op (node name)` for every node whose op (or custom domain) is not allowed; empty when the graph passes."""
    bad = []
    for n in model.graph.node:
        if n.op_type not in allowed or n.domain not in ("", "ai.onnx"):
            op = f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
            bad.append(f"{op} ({n.name or 'unnamed'})")
    return bad


def probe_inputs(batch: int, input_shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Seeded standard-normal images, reproducible without torch (numpy's PCG64)."""
    return np.random.default_rng(seed).standard_normal((batch, *input_shape)).astype(np.float32)


def probe_record(logits: np.ndarray, seed: int = 0) -> str:
    """The metadata value recording a reference model's logits on `probe_inputs(len(logits), ..., seed)`."""
    return json.dumps({"seed": seed, "batch": int(logits.shape[0]),
                       "logits": [[float(v) for v in row] for row in np.asarray(logits, dtype=np.float32)]})


MAX_PROBE_BATCH = 64  # export and quantize record 2; a file claiming more is not theirs
MAX_PROBE_CHARS = 4 << 20


def parse_probe(raw: str, input_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(inputs, reference logits) from a `probe_record` value, or None when it cannot be read: a flat record
    of a small batch whose logits are a [batch, classes] matrix of finite numbers, checked before any image
    is generated."""
    if not isinstance(raw, str) or len(raw) > MAX_PROBE_CHARS:
        return None
    try:
        rec = json.loads(raw)
        batch, seed = rec["batch"], rec["seed"]
        if not (isinstance(batch, int) and isinstance(seed, int) and 1 <= batch <= MAX_PROBE_BATCH
                and 0 <= seed < 2**32 and isinstance(rec["logits"], list) and len(rec["logits"]) == batch):
            return None
        ref = np.asarray(rec["logits"], dtype=np.float32)
        if ref.ndim != 2 or not np.isfinite(ref).all():
            return None
        return probe_inputs(batch, input_shape, seed), ref
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


@dataclass
class OnnxArtifact:
    """An ONNX file as the server and the pipeline see it (no torch)."""

    path: Path
    model: Any  # onnx.ModelProto (onnx is imported where files are read: this module stays light)
    input_shape: tuple[int, int, int]
    num_classes: int
    metadata: dict[str, str] = field(default_factory=dict)

    kind: ClassVar[ArtifactKind] = KINDS["onnx"]
    source: ClassVar[str] = "ONNX file"
    verified_by: ClassVar[str] = "audit and parity probe"

    @property
    def name(self) -> str:
        return self.architecture

    @property
    def graph_kind(self) -> str:
        """The op set the audit allows: what the graph holds (`content_kind`), narrowed by the metadata's
        `graph` (a file may declare itself folded, never widen itself to quantized)."""
        declared = self.provenance.graph or ("folded" if self.from_dirac_deploy else "unknown")
        if declared.split("-")[0] == "quantized" and content_kind(self.model) == "quantized":
            return declared
        return declared if declared.split("-")[0] != "quantized" else "folded"

    @property
    def from_dirac_deploy(self) -> bool:
        return self.model.producer_name == "dirac-deploy"

    @property
    def architecture(self) -> str:
        return self.provenance.architecture or "ONNX graph"

    @property
    def provenance(self) -> Provenance:
        return Provenance.from_onnx_metadata(self.metadata)

    def check(self, runner: Runner | None = None, *, rtol: float = DEFAULT_RTOL) -> Proof:
        """The audit for its kind of graph, then the parity probe on `runner` (default: a new ONNX Runtime
        runner; `check_artifact`)."""
        return check_artifact(self, rtol=rtol, runner=runner)

    def audit(self) -> list[str]:
        """Violations of the op set this kind of graph may hold (unknown graphs: the folded set)."""
        return audit_violations(self.model, GRAPH_OPS.get(self.graph_kind.split("-")[0], GRAPH_OPS["folded"]))

    def probe(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(inputs, reference logits) recorded at export, or None when the file has no probe."""
        raw = metadata_value(self.metadata, PROBE)
        if not raw:
            return None
        probe = parse_probe(raw, self.input_shape)
        if probe is None:
            raise CheckpointError(f"{self.path}: damaged parity probe in the metadata")
        return probe


# Bounds for files from strangers, checked before anything is allocated. A folded DiracNet-34 has under 100
# nodes, its int8 form a few hundred; ImageNet inputs are 3x224x224.
MAX_NODES = 20_000
MAX_EXTERNAL_BYTES = 2 << 30
MAX_METADATA_CHARS = 16 << 20
MAX_CHANNELS, MAX_SIDE, MAX_CLASSES = 4096, 4096, 1_000_000


def _element_size(data_type: int) -> int:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 0


def _check_external_data(model, path: Path) -> None:
    """Each external tensor's file is a regular file inside the model's folder, and holds the bytes its shape
    needs at the declared offset; all of them together within MAX_EXTERNAL_BYTES. Checked before reading."""
    base = path.parent.resolve()
    total = 0
    for t in model.graph.initializer:
        if t.data_location != 1:  # TensorProto.EXTERNAL
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        where = f"{path}: tensor {t.name[:80]!r} keeps its data in {loc[:120]!r}"
        target = (path.parent / loc)
        if not loc or Path(loc).is_absolute() or ".." in Path(loc).parts or base not in target.resolve().parents:
            raise CheckpointError(f"{where}, outside the model's folder; refused")
        if target.is_symlink() or not target.is_file():
            raise CheckpointError(f"{where}, which is not a regular file; refused")
        try:
            offset, length = int(info.get("offset", 0)), info.get("length")
            length = None if length is None else int(length)
        except ValueError:
            raise CheckpointError(f"{where} at a malformed offset or length") from None
        count = int(np.prod([max(int(d), 0) for d in t.dims], dtype=np.float64)) if t.dims else 1
        need = count * _element_size(t.data_type)
        size = target.stat().st_size
        if need == 0 or (length is not None and length != need) or offset < 0 or offset + need > size:
            raise CheckpointError(f"{where}: its shape {list(t.dims)[:8]} needs {need:,} bytes at offset {offset:,}, "
                                  f"the file has {size:,} bytes (declared length {length}); refused")
        total += need
        if total > MAX_EXTERNAL_BYTES:
            raise CheckpointError(f"{path}: external data over {MAX_EXTERNAL_BYTES:,} bytes; not a folded chain")


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value_info.type.tensor_type.shape.dim]


def read_onnx(path: str | Path) -> OnnxArtifact:
    """Load and check an ONNX file and its I/O contract: one input `input` [batch, C, H, W] (fixed C, H, W),
    one output `logits` [batch, classes].

    Raises:
        CheckpointError: missing, not ONNX, fails onnx.checker, or a different I/O contract.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors share no base class
        first = first_line(e)
        raise CheckpointError(f"{path} is not a valid ONNX model: {first[:300]}") from None
    nodes = len(model.graph.node)
    if nodes > MAX_NODES:
        raise CheckpointError(f"{path} has {nodes:,} nodes; a folded chain has at most a few hundred (limit "
                              f"{MAX_NODES:,}), so it is refused before any runtime sees it")
    if sum(len(p.key) + len(p.value) for p in model.metadata_props) > MAX_METADATA_CHARS:
        raise CheckpointError(f"{path}: metadata over {MAX_METADATA_CHARS:,} characters; refused")
    _check_external_data(model, path)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except Exception as e:  # protobuf decode errors and checker errors share no base class
        first = first_line(e)
        raise CheckpointError(f"{path} is not a valid ONNX model: {first[:300]}") from None
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise CheckpointError(f"{path}: expected one input '{INPUT_NAME}' and one output '{OUTPUT_NAME}' (as "
                              f"`dirac-deploy export` writes), found inputs {[i.name for i in inputs]} and outputs "
                              f"{[o.name for o in outputs]}; for your own graph, export it with torch.onnx.export(..., "
                              f"input_names=['{INPUT_NAME}'], output_names=['{OUTPUT_NAME}'], dynamic_axes={{'"
                              f"{INPUT_NAME}': {{0: 'batch'}}, '{OUTPUT_NAME}': {{0: 'batch'}}}})")
    dims, out = _dims(inputs[0]), _dims(outputs[0])
    fixed = all(isinstance(d, int) and d > 0 for d in dims[1:]) if len(dims) == 4 else False
    if not fixed or len(out) != 2 or not (isinstance(out[1], int) and out[1] > 0):
        raise CheckpointError(f"{path}: input must be [batch, C, H, W] and output [batch, classes] with fixed C, H, W "
                              f"and classes; found {dims} and {out}")
    if dims[1] > MAX_CHANNELS or max(dims[2], dims[3]) > MAX_SIDE or out[1] > MAX_CLASSES:
        raise CheckpointError(f"{path}: input [batch, {dims[1]}, {dims[2]}, {dims[3]}] with {out[1]} classes is beyond "
                              f"what this tool serves (at most {MAX_CHANNELS} channels, {MAX_SIDE} pixels a side, "
                              f"{MAX_CLASSES:,} classes)")
    metadata = {p.key: p.value for p in model.metadata_props}
    # the recorded digest against this content: an edited file's recorded probe and proofs do not apply
    check_content(metadata.get(ONNX_CONTENT_KEY, ""), onnx_content_sha256(model), str(path))
    return OnnxArtifact(path, model, (dims[1], dims[2], dims[3]), out[1], metadata)


def audit_artifact(art: OnnxArtifact) -> None:
    """Raise ExportError naming the nodes outside the op set of the artifact's kind of graph."""
    violations = art.audit()
    if violations:
        raise ExportError(f"{art.path} failed the audit for a {art.graph_kind} graph: {len(violations)} node(s) "
                          f"outside it: {', '.join(violations[:8])}{' ...' if len(violations) > 8 else ''}"
                          + ("" if art.provenance.graph else
                             f" (it was not written by dirac-deploy; `dirac-deploy serve {art.path.name} --no-verify` "
                             f"serves it unverified)"))


def check_artifact(art: OnnxArtifact, *, rtol: float = DEFAULT_RTOL, runner: Runner | None = None) -> Proof:
    """Re-check an ONNX file from `export` without its source: the audit for its kind of graph, then `runner`
    (the one that will serve, or a new ONNX Runtime runner on the CPU) against the parity probe recorded in it.

    Raises:
        ExportError: the graph fails the audit, has no parity probe (not written by `dirac-deploy export`), or
            ONNX Runtime cannot run it.
        EquivalenceError: ONNX Runtime does not reproduce the recorded logits, or returns another shape.
    """
    audit_artifact(art)
    if art.graph_kind.startswith("quantized"):  # the audit passed: the graph really is low precision
        rtol = max(rtol, LOW_PRECISION_PROBE_RTOL)
    rtol = narrowed_rtol(rtol, metadata_value(art.metadata, PROBE_RTOL))
    probe = art.probe()
    if probe is None:
        raise ExportError(f"{art.path} has no parity probe in its metadata (it was not written by `dirac-deploy "
                          f"export`), so it cannot be verified. To serve it as it is: `dirac-deploy serve "
                          f"{art.path.name} --no-verify`; to quantize or export it, start from its checkpoint or "
                          f"plain.pth (`dirac-deploy fold`), or for any other net, from your own module "
                          f"(`dirac_deploy.fold_module`)")
    x, ref = probe
    engine = runtimes.engine(runner.engine).label if runner is not None else "ONNX Runtime"
    try:
        got = (runner or runtimes.build("onnxruntime", art.model)).run(x)
    except Exception as e:  # ORT raises its own exception types for graphs it cannot load or run
        first = first_line(e)
        raise ExportError(f"{engine} cannot run {art.path}: {first[:300]}") from None
    got = np.asarray(got)
    if got.ndim != 2 or got.shape[1] != art.num_classes:
        raise EquivalenceError(f"{art.path}: {engine} returns logits of shape {list(got.shape)} for a batch of "
                               f"{len(x)}, but the graph declares {art.num_classes} classes and export recorded "
                               f"{list(ref.shape)}")
    return recorded_probe_proof(str(art.path), x, ref, got, rtol=rtol, runtime=engine)


def recorded_probe_proof(where: str, x: np.ndarray, ref: np.ndarray, got: np.ndarray, *, rtol: float, runtime: str,
                         recorded: str = "at export") -> Proof:
    """A runtime's logits `got` on the recorded probe images `x` against the logits `ref` recorded with them
    (every artifact's `check` ends here: ONNX, IR and the edge programs).

    Raises:
        EquivalenceError: logits of another shape, or logits that differ beyond `rtol`.
    """
    got = np.asarray(got)
    if got.shape != ref.shape:
        raise EquivalenceError(f"{where}: {runtime} returns logits of shape {list(got.shape)} for a batch of "
                               f"{len(x)}; the probe recorded {list(ref.shape)}")
    proof = compare_logits(ref, got, rtol=rtol, input_shape=tuple(x.shape),
                           reference_name=f"logits recorded {recorded}")
    if not proof.ok:
        raise EquivalenceError(f"{where} does not reproduce the logits recorded {recorded} in {runtime}: "
                               f"{proof.describe()}")
    return proof
