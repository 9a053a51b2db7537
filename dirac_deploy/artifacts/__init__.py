"""Typed artifacts: what each stage hands the next, with where it came from and how to check it.

- `provenance.Provenance`: the source, fold proof and input spec, typed once, with its codecs (plain-file
  meta, ONNX metadata_props, OpenVINO rt_info): the only place the `dirac_deploy.*` keys are spelled.
- `plain.PlainArtifact`, `onnx.OnnxArtifact`, `ir.IrArtifact`: a verified chain, an exported / quantized
  graph and an OpenVINO IR, each with its own `check()`.
- `open.open_artifact(path)`: the one dispatch on file kind (a checkpoint is folded there).

Import the submodules; this package imports nothing, so the torch-free ones stay torch-free.
"""
