"""A fresh wheel install, as a user gets it (`make wheel-test`; marker `wheel`, not part of `make test`).

Build the wheel, install it into a new venv with no extras and run `dirac-deploy demo` (it must run end to
end, saying what it skipped); then run the README's pip recipe as written (build the wheel in the clone,
install it with extras) and the README walk-through against that venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from test_docs import readme_blocks, walkthrough_script

from serving import free_port

pytestmark = pytest.mark.wheel
ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, cwd=None, timeout=1800, env=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))[:300]}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)])
    (wheel,) = dist.glob("dirac_deploy-*.whl")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, "torch==2.13.0"])  # the local CPU wheel, as `make install` does
    _run([*pip, "-c", str(ROOT / "constraints.txt"), str(wheel)])
    return root, env_dir, wheel, pip


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "VIRTUAL_ENV"}
    env.update(NO_COLOR="1", COLUMNS="160")
    return env


def test_plain_install_runs_the_demo(fresh):
    root, env_dir, _, _ = fresh
    work = root / "plain"
    work.mkdir()
    proc = _run([str(env_dir / "bin" / "dirac-deploy"), "demo"], cwd=work, env=_env(), timeout=900)
    out = proc.stdout + proc.stderr
    assert "Folded DiracNet-10-1" in out and "skipped" in out.lower()
    assert "pip install '.[" in out and ".whl[" in out  # each skipped step names the extra: clone or wheel
    assert (work / "demo-out" / "digits_diracnet.pt7").is_file()


def readme_install_lines() -> list[str]:
    """The README's pip recipe: the commands of the bash block that says tests/test_wheel.py runs it."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("tests/test_wheel.py runs these lines"):]
    block = block[block.index("```bash\n") + 8:]
    block = block[:block.index("```")]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def readme_installed(fresh):
    """The README's recipe in the fresh venv: the CPU torch (the local wheel stands in for PyTorch's index),
    then the wheel built and installed with extras by the README's own lines, run as written in the clone."""
    _, env_dir, _, _ = fresh
    torch_line, *lines = readme_install_lines()
    assert torch_line == "pip install 'torch>=2.11,<2.14' --index-url https://download.pytorch.org/whl/cpu"
    env = {**_env(), "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PIP_QUIET": "1"}
    for line in lines:
        _run(["bash", "-c", f"set -e; {line}"], cwd=ROOT, env=env)
    return env_dir


def test_readme_pip_recipe_keeps_the_cpu_torch_in_the_declared_range(readme_installed):
    """pip keeps the CPU torch and brings no CUDA package; the wheel declares the torch range the README says,
    and the torch it runs with is in it."""
    import json

    proc = _run([str(readme_installed / "bin" / "python"), "-m", "pip", "list", "--format=json"])
    installed = {p["name"].lower(): p["version"] for p in json.loads(proc.stdout)}
    assert installed["torch"].endswith("+cpu"), installed["torch"]
    assert not [name for name in installed if name.startswith("nvidia") or name == "triton"]
    assert {"openvino", "onnxruntime", "matplotlib", "fastapi"} <= set(installed)
    requires = _run([str(readme_installed / "bin" / "python"), "-c",
                     "import importlib.metadata as m; print(m.requires('dirac-deploy'))"]).stdout
    assert "torch<2.14,>=2.11" in requires, requires
    major, minor = (int(v) for v in installed["torch"].split(".")[:2])
    assert (2, 11) <= (major, minor) < (2, 14)


def test_wheel_with_extras_passes_the_readme_walkthrough(readme_installed, tmp_path):
    env_dir = readme_installed
    work = tmp_path / "walk"
    work.mkdir()
    (work / ".venv").symlink_to(env_dir)
    _run([str(env_dir / "bin" / "dirac-deploy"), "-q", "demo"], cwd=work, env=_env(), timeout=900)
    script = walkthrough_script(readme_blocks((ROOT / "README.md").read_text()), free_port(), free_port())
    (work / "walkthrough.sh").write_text(script)
    proc = subprocess.run(["bash", "walkthrough.sh"], cwd=work, env=_env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert "stopped, exit 0" in proc.stdout
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    assert not (site / "dirac_deploy").is_symlink() and (site / "dirac_deploy" / "data" / "noisy_diracnet.pt7").is_file()
