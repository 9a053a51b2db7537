"""cli.wording: the library names settings as its Python caller sets them; the command line words them as the
flags of the command that ran, and leaves what is not one of its options alone."""

from click.testing import CliRunner

from dirac_deploy.cli import main
from dirac_deploy.cli.wording import for_command_line


def test_settings_become_the_running_commands_flags():
    quantize = main.commands["quantize"]
    said = ("`evaluation` e.npz is `calib`; `min_speedup=0` writes it; use `precision='bf16'` with "
            "`target='openvino'`; re-run with `trust_checkpoint=True`")
    assert for_command_line(said, quantize) == ("--eval e.npz is --calib; --min-speedup 0 writes it; use --precision "
                                                "bf16 with --target openvino; re-run with --trust-checkpoint")
    serve = main.commands["serve"]
    assert for_command_line("`verify=False`, `object_store_mb`, `grpc_port`", serve) == \
        "--no-verify, --ray-object-store-mb, --grpc-port"


def test_what_is_not_an_option_of_the_command_stays_as_written():
    export = main.commands["export"]
    said = "`min_speedup` and `dirac-deploy serve m.onnx --no-verify` and `onnx`"
    assert for_command_line(said, export) == "`min_speedup` and `dirac-deploy serve m.onnx --no-verify` and --onnx"
    assert for_command_line("`calib`", None) == "`calib`"


def test_a_library_refusal_reaches_the_user_in_flags(tmp_path):
    """End to end: quantize_file refuses in Python names, the user reads the quantize command's flags."""
    from dirac_deploy import data

    res = CliRunner().invoke(main, ["quantize", str(data.embedded_checkpoint()), "-o", str(tmp_path / "q.onnx"),
                                    "--calib", "random:8", "--eval", "random:8", "--precision", "bf16",
                                    "--target", "onnxruntime"])
    assert res.exit_code == 1 and "--precision bf16 --target onnxruntime is not built" in res.output
    assert "`" not in res.output.split("not built")[0]
