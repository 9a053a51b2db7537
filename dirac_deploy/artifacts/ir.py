"""The OpenVINO IR artifact (`quantize --target openvino`): an .xml and its .bin, with the provenance and the
parity probe recorded in its rt_info. No torch.

Files from strangers: both files must be regular files of bounded size and the graph of bounded layer count
before OpenVINO reads either (a FIFO would block it; a huge graph can crash it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .. import runtimes
from .._optional import require
from ..errors import DiracDeployError
from ..kinds import KINDS, ArtifactKind
from ..proof import Proof
from ..runtimes import Runner
from .digest import check_content, ir_content_sha256
from .onnx import LOW_PRECISION_PROBE_RTOL, narrowed_rtol, parse_probe, recorded_probe_proof
from .provenance import PROBE, PROBE_RTOL, Provenance, rt_info_reader

MAX_IR_XML_BYTES = 64 << 20
MAX_IR_LAYERS = 20_000  # as onnx.MAX_NODES: a folded chain's IR has a few hundred layers at most


def runtime_reason(e: BaseException) -> str:
    """A runtime's reason, one line: OpenVINO's messages start with a source location ('Exception from
    src/inference/...:84:') and give the reason on a later line; other messages keep their first line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '")) and "src/" not in line]
    return (useful[0] if useful else lines[-1] if lines else type(e).__name__)[:300]


@dataclass
class IrArtifact:
    """An IR read and shape-checked: one input [batch, C, H, W], one output [batch, classes]."""

    path: Path
    net: object  # openvino.Model
    input_shape: tuple[int, int, int]
    num_classes: int
    provenance: Provenance
    probe_record: str = ""  # the parity probe recorded when it was written ('' for a foreign IR)
    probe_rtol: str = ""

    kind: ClassVar[ArtifactKind] = KINDS["openvino-ir"]
    source: ClassVar[str] = "OpenVINO IR"
    verified_by: ClassVar[str] = "parity probe"

    @property
    def model(self) -> object:
        """The `openvino.Model` a runner compiles."""
        return self.net

    @property
    def name(self) -> str:
        return self.provenance.architecture or "OpenVINO IR"

    def check(self, runner: Runner | None = None) -> Proof:
        """`runner` (the compiled model that will serve; default: a new OpenVINO runner at the precision the IR
        records) against the logits recorded when the IR was written, at the tool's tolerance for an IR
        (OpenVINO may run it in bf16 or int8; the file may only narrow it).

        Raises:
            DiracDeployError: no readable probe (not written by `quantize`), or logits that differ.
        """
        probe = parse_probe(self.probe_record, self.input_shape)
        if probe is None:
            raise DiracDeployError(f"{self.path} records no readable parity probe (it was not written by "
                                   f"`dirac-deploy quantize`); serve it with `verify=False` to skip the check")
        x, ref = probe
        runner = runner or runtimes.build("openvino", self.net, precision=self.provenance.precision)
        return recorded_probe_proof(str(self.path), x, ref, runner.run(x), runtime="OpenVINO", recorded="at quantize",
                                    rtol=narrowed_rtol(LOW_PRECISION_PROBE_RTOL, self.probe_rtol))


MAX_IR_BIN_BYTES = 4 << 30  # a folded chain's weights; DiracNet-34 in fp32 is about 90 MB


def _check_ir_files(xml: Path) -> str:
    """Both files regular and bounded, the layer count bounded; returns the content digest of the two
    (`artifacts.digest.ir_content_sha256`), computed before OpenVINO reads either."""
    bin_path = xml.with_suffix(".bin")
    for f in (xml, bin_path):
        if f.is_symlink() or not f.is_file():
            raise DiracDeployError(f"{f} is not a regular file; an IR is an .xml and a .bin beside it")
    if xml.stat().st_size > MAX_IR_XML_BYTES:
        raise DiracDeployError(f"{xml} is over {MAX_IR_XML_BYTES >> 20} MiB of XML; not a folded chain's IR")
    if bin_path.stat().st_size > MAX_IR_BIN_BYTES:
        raise DiracDeployError(f"{bin_path} is over {MAX_IR_BIN_BYTES >> 30} GiB; not a folded chain's weights")
    text = xml.read_bytes()
    layers = text.count(b"<layer ")
    if layers > MAX_IR_LAYERS:
        raise DiracDeployError(f"{xml} has {layers:,} layers; a folded chain's IR has at most a few hundred "
                               f"(limit {MAX_IR_LAYERS:,})")
    return ir_content_sha256(text, bin_path)


def read_ir(path: str | Path) -> IrArtifact:
    """Read an IR (needs openvino) and its I/O contract and provenance.

    Raises:
        DiracDeployError: not regular files, too large, unreadable by OpenVINO, or another I/O contract.
        MissingDependencyError: OpenVINO is not installed.
    """
    path = Path(path)
    ov = require("openvino")
    actual = _check_ir_files(path)
    try:
        net = ov.Core().read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line messages
        raise DiracDeployError(f"OpenVINO cannot read {path}: {runtime_reason(e)}") from None
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        raise DiracDeployError(f"{path}: an IR to serve has one input and one output; this one has "
                               f"{len(net.inputs)} and {len(net.outputs)}")
    shape, out = net.inputs[0].get_partial_shape(), net.outputs[0].get_partial_shape()
    if shape.rank.get_length() != 4 or not all(d.is_static for d in list(shape)[1:]) or out.rank.get_length() != 2 \
            or not out[1].is_static:
        raise DiracDeployError(f"{path}: expected an input [batch, C, H, W] and logits [batch, classes], got "
                               f"{shape} and {out}")
    c, h, w = (d.get_length() for d in list(shape)[1:])
    get = rt_info_reader(net)
    provenance = Provenance.from_rt_info(get)
    check_content(provenance.content_sha256, actual, str(path))  # an edited IR's recorded probe does not apply
    return IrArtifact(path, net, (c, h, w), out[1].get_length(), provenance, get(PROBE), get(PROBE_RTOL))
