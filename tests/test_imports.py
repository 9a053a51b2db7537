"""Every module imports, every command has help, and the library imports no CLI or optional heavy dependency."""

import importlib
import pkgutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

import dirac_deploy
from dirac_deploy.cli import main

MODULES = sorted(m.name for m in pkgutil.walk_packages(dirac_deploy.__path__, "dirac_deploy.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(name)


@pytest.mark.parametrize("command", [[], ["fold"], ["inspect"], ["export"], ["bench"], ["serve"], ["demo"]])
def test_every_command_has_help(command):
    res = CliRunner().invoke(main, [*command, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.stdout and len(res.stdout) > 200


def test_library_import_pulls_no_cli_and_no_optional_dependency():
    code = ("import sys, dirac_deploy; "
            "print(sorted(m for m in ('click', 'rich', 'fastapi', 'uvicorn', 'tensorrt', 'tritonclient', "
            "'matplotlib', 'onnxconverter_common') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
