"""Typed artifacts: what each stage hands the next, with where it came from and how to check it.

- `provenance.Provenance`: the source, fold proof and input spec, typed once, with its codecs (plain-file
  meta, ONNX metadata_props, OpenVINO rt_info): the only place the `dirac_deploy.*` keys are spelled.
- `base.Artifact`: the one shape all three share: `kind` (a `kinds.ArtifactKind`), `model` (what a runtime
  loads), provenance, I/O contract, and `check(runner) -> Proof` against the artifact's own reference.
- `plain.PlainArtifact`, `onnx.OnnxArtifact`, `ir.IrArtifact`: a verified chain (checked against itself in
  float64), an exported / quantized graph (audit and recorded probe) and an OpenVINO IR (recorded probe).
- `deployed.read_deployed(path)`: an .onnx or IR without torch; `opener.open_artifact` opens any file.

Import the submodules; this package imports nothing, so the torch-free ones stay torch-free.
"""
