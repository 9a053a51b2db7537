"""The folded chain as an ExecuTorch program: `torch.export` -> `to_edge_transform_and_lower` with the XNNPACK
partitioner -> `.pte` bytes, proven before anything is written.

The proof: every op of the chain delegated to XNNPACK (counted from the lowered graph; a partial delegation
runs the rest on ExecuTorch's portable kernels, much slower, and is refused unless asked for), then the
written bytes loaded by ExecuTorch's own runtime (not the exporter's simulation: XNNPACK can reject a program
only when it loads) and run on the seeded probe images against the PyTorch chain. The probe's logits go into
the program's record (`artifacts.pte`), so any later reader re-runs them.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from .._optional import require
from ..artifacts.digest import ONNX_CONTENT_KEY
from ..artifacts.onnx import probe_inputs, probe_record
from ..artifacts.provenance import Provenance
from ..artifacts.pte import METADATA_METHOD, PteArtifact, pte_from_bytes, record_json, stamp_pte
from ..errors import EquivalenceError, ExportError, first_line
from ..proof import DEFAULT_RTOL, Proof, compare_logits

PROBE_BATCH = 2
_BOOKKEEPING = {"getitem"}  # a delegate's outputs unpacked: no computation, never "not delegated"


@dataclass
class PteBuild:
    """A verified program: its bytes, what XNNPACK runs of it, and the runtime's parity against PyTorch."""

    data: bytes
    batch: int
    delegated: int  # ops inside XNNPACK subgraphs
    not_delegated: dict[str, int] = field(default_factory=dict)  # op -> count left to the portable kernels
    parity: Proof | None = None

    @property
    def fully_delegated(self) -> bool:
        return not self.not_delegated

    def delegation(self) -> dict[str, Any]:
        return {"delegated": self.delegated, "not_delegated": dict(self.not_delegated)}


def delegation_counts(graph_module) -> tuple[int, dict[str, int]]:
    """(ops delegated to XNNPACK, {op: count} of the rest) in a lowered program's graph
    (`executorch.devtools.backend_debug.get_delegation_info`, without its bookkeeping `getitem`s)."""
    backend_debug = require("executorch.devtools.backend_debug")
    info = backend_debug.get_delegation_info(graph_module)
    delegated, rest = 0, Counter[str]()
    for op, breakdown in info.delegation_by_operator.items():
        if op in _BOOKKEEPING:
            continue
        delegated += breakdown.delegated
        if breakdown.non_delegated:
            rest[op] += breakdown.non_delegated
    return delegated, dict(rest)


class Program:
    """A lowered ExecuTorch program kept as its edge program, so it can be serialized again with the record
    `quantize` writes into it once the proof is done; `data` is the program without a record (what the proof
    and the speed proof run: the record changes no computation)."""

    def __init__(self, edge, delegated: int, not_delegated: dict[str, int], convs: dict[str, int]):
        self.edge, self.delegated, self.not_delegated = edge, delegated, not_delegated
        # XNNPACK runs a quantized conv in int8 only inside its delegate; what it leaves out runs dequantized
        int8 = convs.get("int8", 0) if not not_delegated else 0
        self.runtime_ops = {"conv": {"int8": int8, "fp32": sum(convs.values()) - int8}}

    @cached_property
    def data(self) -> bytes:
        """Serialized on first use: `export` only ever writes the program with its record (`with_record`)."""
        return self.edge.to_executorch().buffer

    def with_record(self, record: str) -> bytes:
        """The program serialized with `record` as its `dirac_deploy_metadata` (`serialized`)."""
        return serialized(self.edge, record)

    def delegation(self) -> dict:
        return {"delegated": self.delegated, "not_delegated": dict(self.not_delegated)}


def serialized(edge, record: str) -> bytes:
    """The lowered program's bytes with `record` as its `dirac_deploy_metadata`. ExecuTorch 1.5.1 (pinned
    exactly) keeps constant methods as given in the edge program's `_config_methods` until serialization, so
    the record is set there after lowering (what it records, the delegation, is known only then)."""
    if not isinstance(getattr(edge, "_config_methods", None), dict):
        raise ExportError("this ExecuTorch keeps no constant methods where 1.5.1 did; install the pinned version "
                          "(pip install '.[executorch]')")
    edge._config_methods[METADATA_METHOD] = record
    return edge.to_executorch().buffer


def lower(module: torch.nn.Module, example: torch.Tensor):
    """`torch.export` of `module` on `example`, lowered with the XNNPACK partitioner, with an empty record
    (`serialized` writes the real one). ExecuTorch's own notices stay out of the user's terminal.

    Raises:
        ExportError: torch.export or the lowering fails.
    """
    from ..runtimes.executorch import quiet_imports

    quiet_imports()
    exir = require("executorch.exir")
    partitioner = require("executorch.backends.xnnpack.partition.xnnpack_partitioner")
    try:
        with warnings.catch_warnings():  # torch.export's and ExecuTorch's deprecation notices are not the user's
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            exported = torch.export.export(module, (example,))
            return exir.to_edge_transform_and_lower(exported, partitioner=[partitioner.XnnpackPartitioner()],
                                                    constant_methods={METADATA_METHOD: "{}"})
    except Exception as e:  # torch.export and the lowering raise many types; all mean "could not lower"
        raise ExportError(f"ExecuTorch could not lower the chain: {first_line(e)[:300]}") from None


def lower_program(module: torch.nn.Module, input_shape: tuple[int, int, int], batch: int = 1, *,
                  convs: dict[str, int] | None = None) -> Program:
    """`module` lowered to an ExecuTorch program for `batch` images, its delegation counted, without a record
    or a proof (what a benchmark times; what `quantize` proves and then writes with its record). `convs`: the
    convs by the precision of their weights (default: all fp32).

    Raises:
        ExportError: ExecuTorch cannot lower it.
    """
    # a converted PT2E graph refuses .eval() (it has no train mode); a chain is put in eval mode by its caller
    edge = lower(module, torch.zeros(batch, *input_shape))
    delegated, rest = delegation_counts(edge.exported_program().graph_module)
    if convs is None:
        convs = {"int8": 0, "fp32": sum(isinstance(m, torch.nn.Conv2d) for m in module.modules())}
    return Program(edge, delegated, rest, convs)


def build_pte(module: torch.nn.Module, input_shape: tuple[int, int, int], num_classes: int,
              provenance: Provenance, *, batch: int = 1, allow_partial: bool = False,
              rtol: float = DEFAULT_RTOL) -> PteBuild:
    """The verified ExecuTorch program of `module` (eval mode), compiled for `batch` images per call.

    Raises:
        ExportError: ExecuTorch cannot lower or load it, or XNNPACK leaves ops out and `allow_partial` is off.
        EquivalenceError: the program in ExecuTorch's runtime does not reproduce the PyTorch chain.
        MissingDependencyError: the [executorch] extra is not installed.
    """
    from ..runtimes.executorch import Runner

    module = module.eval()
    x = probe_inputs(PROBE_BATCH, input_shape)
    with torch.no_grad():
        reference = module(torch.from_numpy(x)).double().numpy()
    program = {"input_shape": list(input_shape), "num_classes": num_classes, "batch": batch}
    props = provenance.replace(graph="folded", precision="fp32").to_onnx_metadata(
        probe=probe_record(reference.astype(np.float32)), probe_rtol=rtol)
    props[ONNX_CONTENT_KEY] = "0" * 64  # `stamp_pte` writes the digest here once the bytes exist
    prog = lower_program(module, input_shape, batch)
    delegated, rest = prog.delegated, prog.not_delegated
    if rest and not allow_partial:
        left = ", ".join(f"{op} x{n}" for op, n in sorted(rest.items()))
        raise ExportError(f"XNNPACK delegates {delegated} ops and leaves {sum(rest.values())} to ExecuTorch's portable "
                          f"kernels ({left}), which run far slower; nothing written. `allow_partial=True` writes it "
                          f"anyway")
    program["delegation"] = {"delegated": delegated, "not_delegated": rest}
    try:
        data = stamp_pte(prog.with_record(record_json(program, props)))
        got = Runner(data).run(x)  # the written bytes in the runtime that will run them
    except ExportError:
        raise
    except Exception as e:  # the runtime refuses a program it cannot load (XNNPACK checks at load time)
        raise ExportError(f"ExecuTorch cannot load or run the lowered program: {first_line(e)[:300]}") from None
    parity = compare_logits(reference, got, rtol=rtol, input_shape=tuple(x.shape),
                            reference_name="PyTorch chain")
    if not parity.ok:
        raise EquivalenceError(f"the ExecuTorch program does not reproduce the PyTorch chain: {parity.describe()}; "
                               f"nothing written")
    return PteBuild(data, batch, delegated, rest, parity)


def pte_artifact(art) -> PteArtifact:
    """`PlainArtifact -> PteArtifact`: the verified program of a chain, in memory (`serve ckpt@executorch`)."""
    built = build_pte(art.plain, art.input_shape, art.num_classes, art.provenance)
    return pte_from_bytes(built.data, art.path)
