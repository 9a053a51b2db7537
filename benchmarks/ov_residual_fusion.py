"""Which residual Adds of the identity int8 graph OpenVINO's CPU plugin fuses into their conv.

    .venv/bin/python benchmarks/ov_residual_fusion.py   # ~1 min; writes results/ov-residual-fusion.json

DiracNet-18 (ImageNet, random weights, calibrated BN) and the embedded digits model, each quantized by
`quantize_identity` for OpenVINO (random calibration images), compiled at batch 1 with the plugin's defaults;
a residual `Add` (`<conv>_residual`) counts as separate when an Eltwise node of the runtime graph
(`get_runtime_model()`, its `originalLayersNames`) still holds it, else as fused. The plugin fuses an Add into
a conv as an in-place sum only when the Add's other operand does not feed that conv (docs/low-precision.md):
expected fused are the widening convs, whose identity reaches the Add through a Pad.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from dirac_deploy import data
from dirac_deploy.bench.env import collect_env
from dirac_deploy.bench.models import calibrate_bn
from dirac_deploy.bench.report import write_json
from dirac_deploy.export.from_file import verified_onnx
from dirac_deploy.export.onnx import export_onnx
from dirac_deploy.folding.fold import fold
from dirac_deploy.models.dirac import DiracNet
from dirac_deploy.opener import load_model
from dirac_deploy.quantize.int8 import quantize_identity
from dirac_deploy.runtimes.openvino import compiled, load
from dirac_deploy.spec import imagenet_spec

RESULTS = Path(__file__).resolve().parent / "results"


def residual_fusion(fp32, input_shape: tuple[int, ...]) -> dict:
    calib = np.random.default_rng(0).standard_normal((32, *input_shape)).astype(np.float32)
    qdq = quantize_identity(fp32, calib, target="openvino").model
    adds = [n.name for n in qdq.graph.node if n.op_type == "Add" and n.name.endswith("_residual")]
    widening = {n.name.removesuffix("_widen") + "_residual" for n in qdq.graph.node if n.name.endswith("_widen")}
    net = compiled(load(qdq), batch=1, hint=None)
    separate = set()
    for op in net.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if str(info["layerType"].astype(str)) == "Eltwise":
            separate |= set(str(info["originalLayersNames"].astype(str)).split(",")) & set(adds)
    fused = [a for a in adds if a not in separate]
    return {"residual_adds": len(adds), "separate": len(separate), "fused": fused,
            "widening": sorted(widening), "fused_are_the_widening": set(fused) == widening}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "diracnet18.onnx"
        export_onnx(fold(calibrate_bn(DiracNet(imagenet_spec(18)), (3, 224, 224))).plain, path,
                    input_shape=(3, 224, 224))
        models = {"diracnet18": (onnx.load(path), (3, 224, 224)),
                  "digits": (verified_onnx(load_model(data.embedded_checkpoint())).model, (3, 32, 32))}
        import openvino

        result = {"env": collect_env("cpu", len(os.sched_getaffinity(0))), "openvino": openvino.get_version(),
                  "method": __doc__.split("\n\n")[1].replace("\n", " ")}
        for name, (model, shape) in models.items():
            print(f"{name} ...", file=sys.stderr)
            result[name] = residual_fusion(model, shape)
            r = result[name]
            print(f"{name}: {r['separate']} of {r['residual_adds']} residual Adds separate, fused: {r['fused']}")
    out = write_json(RESULTS / "ov-residual-fusion.json", result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
