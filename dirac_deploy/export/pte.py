"""The folded chain as an ExecuTorch program: `torch.export` -> `to_edge_transform_and_lower` with the XNNPACK
partitioner -> `.pte` bytes, proven before anything is written (`export.program.build_program`: every op
delegated, the written bytes loaded and run by ExecuTorch's own runtime against the PyTorch chain).

What runs outside XNNPACK runs on ExecuTorch's portable kernels, much slower. The record (`artifacts.pte`) is a
constant method, set after lowering (`serialized`): what it records, the delegation, is known only then.
"""

from __future__ import annotations

import warnings
from collections import Counter
from functools import cached_property

import torch

from .._optional import require
from ..artifacts.provenance import Provenance
from ..artifacts.pte import METADATA_METHOD
from ..errors import ExportError, first_line
from .program import ProgramBuild, build_program, delegated_convs

_BOOKKEEPING = {"getitem"}  # a delegate's outputs unpacked: no computation, never "not delegated"


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
        self.runtime_ops = delegated_convs(convs, not_delegated)
        self.layers: list = []

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
    from ..runtimes.native_log import quiet_imports

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
                  convs: dict[str, int]) -> Program:
    """`module` lowered to an ExecuTorch program for `batch` images, its delegation counted
    (`export.program.lower_program`, which every caller goes through).

    Raises:
        ExportError: ExecuTorch cannot lower it.
    """
    # a converted PT2E graph refuses .eval() (it has no train mode); a chain is put in eval mode by its caller
    edge = lower(module, torch.zeros(batch, *input_shape))
    delegated, rest = delegation_counts(edge.exported_program().graph_module)
    return Program(edge, delegated, rest, convs)


def prepare(module: torch.nn.Module) -> torch.nn.Module:
    """XNNPACK under ExecuTorch takes the chain's layers as they are."""
    return module


FOLD_QUANTIZE = True  # PT2E stores int8 weights; XNNPACK's partitioner takes them so


def pt2e_quantizer():
    """XNNPACK's PT2E quantizer for ExecuTorch: symmetric int8, per-channel weights (`quantize.edge`)."""
    quantizer = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer")
    return quantizer.XNNPACKQuantizer().set_global(quantizer.get_symmetric_quantization_config(is_per_channel=True))


def build_pte(module: torch.nn.Module, input_shape: tuple[int, int, int], num_classes: int,
              provenance: Provenance, **kwargs) -> ProgramBuild:
    """`export.program.build_program` for ExecuTorch."""
    return build_program("pte", module, input_shape, num_classes, provenance, **kwargs)
