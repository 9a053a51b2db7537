"""The folded chain as a lowered program for an edge runtime (ExecuTorch `.pte`, LiteRT `.tflite`), proven before
anything is written. One table, `LOWERINGS`: a new edge stack is one module (its `lower_program` and
`quantized_module`), one artifact class and one row here.

The proof, the same for every stack: every op of the chain delegated to the runtime's XNNPACK delegate
(counted from the lowered program; what is left runs on the runtime's reference kernels, much slower, and is
refused unless asked for), then the written bytes loaded by the runtime itself (not the exporter's
simulation: a delegate can reject a program only when it loads) and run on the seeded probe images against
the PyTorch chain. The probe's logits go into the program's record (`artifacts.program`), so any later reader
re-runs them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ..artifacts.digest import ONNX_CONTENT_KEY
from ..artifacts.onnx import probe_inputs, probe_record
from ..artifacts.program import ProgramArtifact, program_from_bytes, record_json, stamp
from ..artifacts.provenance import Provenance
from ..errors import EquivalenceError, ExportError, first_line
from ..proof import DEFAULT_RTOL, Proof, compare_logits

PROBE_BATCH = 2


class Program(Protocol):
    """A lowered program before it is written: its delegation, the convs its delegate runs by precision, its
    bytes without a record (what the proofs run: the record changes no computation) and with one."""

    delegated: int  # ops inside the delegate's subgraphs
    not_delegated: dict[str, int]  # op -> count left to the runtime's own kernels
    runtime_ops: dict[str, dict[str, int]]  # {"conv": {"int8": n, "fp32": m}}
    layers: list  # an int8 program's per-conv table (`quantize.edge.layer_table`; [] when not measured)

    @property
    def data(self) -> bytes: ...

    def with_record(self, record: str) -> bytes: ...

    def delegation(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Lowering:
    """An edge stack: its key (the export target, the artifact kind, the file's suffix), its runtime, its name
    for people, the module lowering and quantizing a chain for it, and its artifact class."""

    key: str
    engine: str
    label: str
    # has lower_program(module, input_shape, batch, *, convs) -> Program, pt2e_quantizer(), FOLD_QUANTIZE and
    # prepare(chain) -> chain (the same function in the layers the stack's delegate runs whole)
    module: str
    artifact: str  # "module:Class" of its ProgramArtifact

    @property
    def runtime(self) -> str:
        """The runtime's name in messages ("ExecuTorch", "LiteRT")."""
        return self.label.split(" (")[0]

    def stack(self):
        return importlib.import_module(self.module)

    def artifact_class(self) -> type[ProgramArtifact]:
        mod, _, name = self.artifact.partition(":")
        cls: type[ProgramArtifact] = getattr(importlib.import_module(mod), name)
        return cls


LOWERINGS: dict[str, Lowering] = {lw.key: lw for lw in (
    Lowering("pte", "executorch", "ExecuTorch (XNNPACK)", "dirac_deploy.export.pte",
             "dirac_deploy.artifacts.pte:PteArtifact"),
    Lowering("tflite", "litert", "LiteRT (XNNPACK)", "dirac_deploy.export.tflite",
             "dirac_deploy.artifacts.tflite:TfliteArtifact"),
)}
BY_ENGINE = {lw.engine: lw for lw in LOWERINGS.values()}


def lower_program(engine: str, module: torch.nn.Module, input_shape: tuple[int, int, int], batch: int = 1, *,
                  convs: dict[str, int] | None = None) -> Program:
    """`module` lowered for `engine`'s runtime for `batch` images, its delegation counted, without a record or a
    proof (what a benchmark times; what `quantize` proves and then writes with its record). `convs`: the convs
    by the precision of their weights (default: all fp32).

    Raises:
        ExportError: the stack cannot lower it.
    """
    if convs is None:
        convs = {"int8": 0, "fp32": sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())}
    stack = BY_ENGINE[engine].stack()
    result: Program = stack.lower_program(stack.prepare(module), input_shape, batch, convs=convs)
    return result


def delegated_convs(convs: dict[str, int], not_delegated: dict[str, int]) -> dict[str, dict[str, int]]:
    """The convs the delegate runs in int8 and in fp32: a quantized conv runs in int8 only inside the delegate,
    so a program with anything left out is counted as all fp32 (what it left may be the convs)."""
    int8 = convs.get("int8", 0) if not not_delegated else 0
    return {"conv": {"int8": int8, "fp32": sum(convs.values()) - int8}}


@dataclass
class ProgramBuild:
    """A verified program: its bytes, what the delegate runs of it, and the runtime's parity against PyTorch."""

    data: bytes
    batch: int
    delegated: int
    not_delegated: dict[str, int] = field(default_factory=dict)
    parity: Proof | None = None

    @property
    def fully_delegated(self) -> bool:
        return not self.not_delegated

    def delegation(self) -> dict[str, Any]:
        return {"delegated": self.delegated, "not_delegated": dict(self.not_delegated)}


def build_program(key: str, module: torch.nn.Module, input_shape: tuple[int, int, int], num_classes: int,
                  provenance: Provenance, *, batch: int = 1, allow_partial: bool = False,
                  rtol: float = DEFAULT_RTOL) -> ProgramBuild:
    """The verified `key` program ("pte", "tflite") of `module` (eval mode), compiled for `batch` images per call.

    Raises:
        ExportError: the stack cannot lower or load it, or its delegate leaves ops out and `allow_partial` is off.
        EquivalenceError: the program in its runtime does not reproduce the PyTorch chain.
        MissingDependencyError: the stack's extra is not installed.
    """
    from .. import runtimes

    lowering = LOWERINGS[key]
    module = module.eval()
    x = probe_inputs(PROBE_BATCH, input_shape)
    with torch.no_grad():
        reference = module(torch.from_numpy(x)).double().numpy()
    props = provenance.replace(graph="folded", precision="fp32").to_onnx_metadata(
        probe=probe_record(reference.astype(np.float32)), probe_rtol=rtol)
    props[ONNX_CONTENT_KEY] = "0" * 64  # `stamp` writes the digest here once the bytes exist
    prog = lower_program(lowering.engine, module, input_shape, batch)
    delegated, rest = prog.delegated, prog.not_delegated
    runtime = lowering.runtime
    if rest and not allow_partial:
        left = ", ".join(f"{op} x{n}" for op, n in sorted(rest.items()))
        raise ExportError(f"XNNPACK delegates {delegated} ops and leaves {sum(rest.values())} to {runtime}'s own "
                          f"kernels ({left}), which run far slower; nothing written. `allow_partial=True` writes it "
                          f"anyway")
    program = {"input_shape": list(input_shape), "num_classes": num_classes, "batch": batch,
               "delegation": prog.delegation()}
    fmt = lowering.artifact_class().format
    try:
        data = stamp(prog.with_record(record_json(fmt, program, props)), fmt)
        got = runtimes.build(lowering.engine, data).run(x)  # the written bytes in the runtime that will run them
    except ExportError:
        raise
    except Exception as e:  # the runtime refuses a program it cannot load (XNNPACK checks at load time)
        raise ExportError(f"{runtime} cannot load or run the lowered program: {first_line(e)[:300]}") from None
    parity = compare_logits(reference, got, rtol=rtol, input_shape=tuple(x.shape), reference_name="PyTorch chain")
    if not parity.ok:
        raise EquivalenceError(f"the {runtime} program does not reproduce the PyTorch chain: {parity.describe()}; "
                               f"nothing written")
    return ProgramBuild(data, batch, delegated, rest, parity)


def program_artifact(key: str, art) -> ProgramArtifact:
    """`PlainArtifact -> ProgramArtifact`: the verified `key` program of a chain, in memory (`serve
    ckpt@executorch`)."""
    built = build_program(key, art.plain, art.input_shape, art.num_classes, art.provenance)
    return program_from_bytes(built.data, art.path, LOWERINGS[key].artifact_class())
