"""Writing a proven low-precision artifact: an .onnx, an OpenVINO IR (.xml + .bin) or an edge program (.pte,
.tflite), each with its provenance, the proof and a parity probe of its own logits recorded in it, and a content
digest over its bytes. Nothing here decides whether to write: `run.quantize_file` calls `write_artifact` only
after the proofs passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..artifacts.onnx import LOW_PRECISION_PROBE_RTOL, probe_inputs
from ..artifacts.provenance import Provenance
from ..errors import ExportError, OutputPathError
from ..fileio import write_all
from ..runtimes import LOWERED_ENGINES, logits

if TYPE_CHECKING:
    from .run import Artifact

PROBE_RTOL = LOW_PRECISION_PROBE_RTOL  # recorded for readers; the checks use the tool's own value


def write_artifact(art: Artifact, output: Path, loaded) -> list[Path]:
    """`art` written to `output` (an IR: `output` and its .bin), all files or none; `loaded`: the opened
    source (its provenance and I/O contract)."""
    probe_x = probe_inputs(2, loaded.input_shape)
    if art.target in LOWERED_ENGINES:
        data = program_bytes(art, loaded.provenance, probe_x, loaded.input_shape, loaded.num_classes)
        return write_all({output: lambda tmp: tmp.write_bytes(data)})
    if art.is_onnx:
        onnx_data = onnx_bytes(art, loaded.provenance, probe_x)
        return write_all({output: lambda tmp: tmp.write_bytes(onnx_data)})
    return write_ir(art, output, loaded.provenance, probe_x)


def artifact_provenance(art: Artifact, source: Provenance) -> Provenance:
    return source.replace(graph=f"quantized-{art.precision}", precision=art.precision, method=art.method)


def onnx_bytes(art: Artifact, source: Provenance, probe_x: np.ndarray) -> bytes:
    from ..artifacts.digest import stamp_onnx
    from ..artifacts.onnx import probe_record

    model = art.model
    probe_logits = logits("onnxruntime", model, probe_x)
    props = artifact_provenance(art, source).to_onnx_metadata(
        probe=probe_record(probe_logits), probe_rtol=PROBE_RTOL, low_precision_proof=art.proof.to_dict(),
        int8_types=art.int8_types or "")
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=str(v))
    model.producer_name = "dirac-deploy"
    stamp_onnx(model)  # last: the digest covers the graph, the weights and everything recorded above
    return model.SerializeToString()


def fp32_program(engine: str, chain, input_shape) -> bytes:
    from ..export.program import lower_program

    return lower_program(engine, chain, input_shape).data


def program_bytes(art: Artifact, source: Provenance, probe_x: np.ndarray, input_shape, num_classes: int) -> bytes:
    """The program with its record (provenance, the proof, its own logits on the seeded probe images as its
    runtime computes them) and content digest, loaded and re-checked by that runtime before it is written."""
    from ..artifacts.digest import ONNX_CONTENT_KEY
    from ..artifacts.onnx import probe_record
    from ..artifacts.program import record_json, stamp
    from ..export.program import BY_ENGINE

    prog, cls = art.model, BY_ENGINE[art.target].artifact_class()
    props = artifact_provenance(art, source).to_onnx_metadata(
        probe=probe_record(logits(art.target, prog, probe_x)), low_precision_proof=art.proof.to_dict())
    props[ONNX_CONTENT_KEY] = "0" * 64  # `stamp` writes the digest here
    program_info = {"input_shape": list(input_shape), "num_classes": num_classes, "batch": 1,
                    "delegation": prog.delegation()}
    data = stamp(prog.with_record(record_json(cls.format, program_info, props)), cls.format)
    written = cls(Path("the quantized program"), data, tuple(input_shape), num_classes,
                  Provenance.from_onnx_metadata(props), 1, prog.delegation(), props)
    written.check()  # the bytes about to be written, in their runtime, against their own record
    return data


def write_ir(art: Artifact, output: Path, source: Provenance, probe_x: np.ndarray) -> list[Path]:
    """The IR with its provenance under rt_info `dirac_deploy/...` and its own parity probe (its logits on
    the seeded probe images, as OpenVINO computes them at the precision the IR records), checked by `serve`."""
    import tempfile

    from ..artifacts.digest import CONTENT_KEY, ir_content_sha256
    from ..artifacts.onnx import probe_record
    from ..artifacts.provenance import write_rt_info
    from .openvino import save_ir

    model = art.model
    probe_logits = logits("openvino", model, probe_x, batch=len(probe_x))
    write_rt_info(model, artifact_provenance(art, source).to_rt_info(
        probe=probe_record(probe_logits), probe_rtol=PROBE_RTOL, low_precision_proof=art.proof.to_dict(),
        int8_types=art.int8_types or ""))
    try:
        staging = tempfile.TemporaryDirectory(prefix="dirac-deploy-ir-", dir=output.parent)
    except OSError as e:  # an unwritable folder: the user's error, said as one, before any file is made
        raise OutputPathError(f"cannot write {output}: {e.strerror or e} (in {output.parent})") from None
    with staging as tmp:
        xml = Path(tmp) / "model.xml"
        save_ir(model, xml)
        # the content digest over what was just written, recorded in rt_info and written again: the second
        # .xml must differ from the first only by that element (checked, so the stamp always verifies)
        digest = ir_content_sha256(xml.read_bytes(), xml.with_suffix(".bin").read_bytes())
        write_rt_info(model, {CONTENT_KEY: digest})
        save_ir(model, xml)
        xml_bytes, bin_bytes = xml.read_bytes(), xml.with_suffix(".bin").read_bytes()
    if ir_content_sha256(xml_bytes, bin_bytes) != digest:
        raise ExportError("OpenVINO wrote the IR differently twice, so its content digest cannot be recorded; "
                          "nothing written (please report it)")
    # The .xml names its weights file by the .xml's own name: model.xml -> model.bin, so rename both together.
    return write_all({output: lambda tmp: tmp.write_bytes(xml_bytes),
                      output.with_suffix(".bin"): lambda tmp: tmp.write_bytes(bin_bytes)})
