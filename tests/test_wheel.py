"""A fresh wheel install, as a user gets it (`make wheel-test`; marker `wheel`, not part of `make test`).

Build the wheel, install it into a new venv with no extras and run `dirac-deploy demo` (it must run end to
end, saying what it skipped), then add the extras and run the README walk-through against that venv.
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
EXTRAS = "export,plot,serve,triton,fp16,openvino"


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


def test_cpu_install_recipe_keeps_the_cpu_torch(fresh):
    """The README's pip recipe for CPU machines: the CPU torch first, then the package (here the local CPU
    wheel stands in for PyTorch's CPU index). pip must keep that torch and bring no CUDA package."""
    import json

    _, env_dir, _, _ = fresh
    proc = _run([str(env_dir / "bin" / "python"), "-m", "pip", "list", "--format=json"])
    installed = {p["name"].lower(): p["version"] for p in json.loads(proc.stdout)}
    assert installed["torch"].endswith("+cpu"), installed["torch"]
    assert not [name for name in installed if name.startswith("nvidia") or name == "triton"]
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme


def test_plain_install_runs_the_demo(fresh):
    root, env_dir, _, _ = fresh
    work = root / "plain"
    work.mkdir()
    proc = _run([str(env_dir / "bin" / "dirac-deploy"), "demo"], cwd=work, env=_env(), timeout=900)
    out = proc.stdout + proc.stderr
    assert "Folded DiracNet-10-1" in out and "skipped" in out.lower()
    assert "pip install 'dirac-deploy[" in out  # each skipped step names the extra that adds it
    assert (work / "demo-out" / "digits_diracnet.pt7").is_file()


def test_wheel_with_extras_passes_the_readme_walkthrough(fresh):
    root, env_dir, wheel, pip = fresh
    _run([*pip, "-c", str(ROOT / "constraints.txt"), f"{wheel}[{EXTRAS}]"])
    work = root / "walk"
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
