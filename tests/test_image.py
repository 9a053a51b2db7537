"""Build and run the serving images for real (`make image-test`; marker `image`, not part of `make test`).

With podman (or docker) able to run containers: make a local Debian base when no Python base image is
available (debootstrap, as root), build the slim and the full image, run each with models mounted read-only
at /models, and check the HEALTHCHECK, the UID, tritonclient answers over HTTP and gRPC against in-process
ONNX Runtime, and that `stop` (SIGTERM) ends the container with exit 0 within a bound. Skips, with the
reason, where no engine can run a container.

Environment: DIRAC_IMAGE_ENGINE (podman|docker), DIRAC_IMAGE_BASE (a Python 3.11 image to build from).
The host's PIP_* settings and CA certificates are passed into the builds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from dirac_deploy.data import embedded_checkpoint
from dirac_deploy.export.from_file import export_file
from dirac_deploy.runtimes.onnxruntime import session as ort_session

pytestmark = pytest.mark.image
ROOT = Path(__file__).resolve().parents[1]
LOCAL_BASE = "localhost/dirac-deploy-base:bookworm"
UID = 10001
STOP_BOUND_S = 30


def _engine() -> tuple[list[str], str]:
    """The first engine that can actually run containers (`info` answers): DIRAC_IMAGE_ENGINE if set, else
    podman, else docker. A `docker` command with no daemon behind it is passed over, not chosen and skipped.
    With DIRAC_REQUIRE_IMAGE_ENGINE=1 (set by .ci/run) no working engine is a failure, not a skip."""
    wanted = os.environ.get("DIRAC_IMAGE_ENGINE")
    reasons = []
    for name in ([wanted] if wanted else ["podman", "docker"]):
        if not shutil.which(name):
            reasons.append(f"{name}: not installed")
            continue
        env = dict(os.environ)
        if name == "podman":
            env.setdefault("CONTAINERS_CONF", str(ROOT / "docker" / "containers.conf"))
        probe = subprocess.run([name, "info"], capture_output=True, text=True, timeout=120, env=env)
        if probe.returncode == 0:
            if name == "podman":
                os.environ.setdefault("CONTAINERS_CONF", env["CONTAINERS_CONF"])
            return [name], name
        reasons.append(f"{name}: cannot run containers here ({(probe.stderr.strip().splitlines() or ['?'])[-1][:160]})")
    why = "no container engine can run containers: " + "; ".join(reasons)
    if os.environ.get("DIRAC_REQUIRE_IMAGE_ENGINE") == "1":
        pytest.fail(why)
    pytest.skip(why)


def _run(cmd, timeout=1800, check=True, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))[:300]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def _has_image(engine, ref: str) -> bool:
    return subprocess.run([*engine, "image", "exists" if engine[0] == "podman" else "inspect", ref],
                          capture_output=True, timeout=60).returncode == 0


def make_local_base(engine) -> str:
    """A Debian bookworm base with python3 and python3-venv, made with debootstrap and imported."""
    if _has_image(engine, LOCAL_BASE):
        return LOCAL_BASE
    if not shutil.which("debootstrap") or os.geteuid() != 0:
        pytest.skip("no Python base image and no way to make one (debootstrap as root)")
    rootfs = Path("/tmp/dirac-deploy-rootfs")
    shutil.rmtree(rootfs, ignore_errors=True)
    _run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm",
          str(rootfs), "http://deb.debian.org/debian"])
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    _run([*engine, "import", "--change", 'CMD ["python3"]', "-", LOCAL_BASE], stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    return LOCAL_BASE


def build_args() -> list[str]:
    """The host's pip configuration as build arguments, and the directories it names mounted into the build."""
    args = []
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "PIP_TRUSTED_HOST",
                "PIP_DEFAULT_TIMEOUT"):
        if os.environ.get(key):
            args += ["--build-arg", f"{key}={os.environ[key]}"]
    mounts = {"/etc/ssl/certs"}
    for path in os.environ.get("PIP_FIND_LINKS", "").split():
        if Path(path).is_dir():
            mounts.add(path)
    for m in sorted(mounts):
        args += ["--volume", f"{m}:{m}:ro"]
    wheels = [p for d in os.environ.get("PIP_FIND_LINKS", "").split() if Path(d).is_dir()
              for p in Path(d).glob("torch-2.13.0+cpu-*.whl")]
    if wheels:  # PyTorch's CPU index may be unreachable; the local CPU wheel is the same release, and
        # naming its local version keeps pip from taking PyPI's CUDA build of 2.13.0 instead
        args += ["--build-arg", "TORCH_INDEX_URL=", "--build-arg", "TORCH_SPEC=torch==2.13.0+cpu"]
    return args


@pytest.fixture(scope="module")
def images():
    engine, name = _engine()
    base = os.environ.get("DIRAC_IMAGE_BASE") or (LOCAL_BASE if name == "podman" else "python:3.11-slim-bookworm")
    if base == LOCAL_BASE:
        base = make_local_base(engine)
    common = [*engine, "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}", *build_args()]
    if name == "podman":
        common.insert(2, "--format")
        common.insert(3, "docker")  # OCI images drop HEALTHCHECK
    built = {}
    for target, tag in (("slim", "dirac-deploy:slim"), ("full", "dirac-deploy")):
        t0 = time.monotonic()
        _run([*common, "--target", target, "-t", tag, str(ROOT)], timeout=3600)
        size = int(_run([*engine, "image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip())
        built[target] = {"tag": tag, "size_bytes": size, "build_s": time.monotonic() - t0}
    report = os.environ.get("DIRAC_IMAGE_REPORT")
    if report:
        Path(report).write_text(json.dumps({"engine": name, "base": base, "images": built}, indent=1) + "\n")
    return engine, built


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    export_file(embedded_checkpoint(), d / "digits.onnx")
    shutil.copy(embedded_checkpoint(), d / "digits_ckpt.pt7")
    d.chmod(0o755)
    for f in d.iterdir():
        f.chmod(0o644)
    return d


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_container(engine, tag: str, model_dir: Path, models: list[str], extra_args: list[str] = ()):
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    http, grpc = _free_port(), _free_port()
    name = f"dirac-deploy-test-{os.getpid()}-{http}"
    _run([*engine, "run", "-d", "--name", name, "--network", "host", "-v", f"{model_dir}:/models:ro", tag,
          *extra_args, "/models", "--host", "127.0.0.1", "--port", str(http), "--grpc-port", str(grpc)])
    try:
        deadline = time.monotonic() + 180
        client = thttp.InferenceServerClient(f"127.0.0.1:{http}", network_timeout=30.0)
        while True:
            try:
                if client.is_server_ready():
                    break
            except Exception:  # connection refused while the server starts
                pass
            state = _run([*engine, "inspect", "--format", "{{.State.Running}}", name]).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = _run([*engine, "logs", name], check=False)
                raise AssertionError(f"{tag} not ready (running: {state}):\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
            time.sleep(0.5)
        # the image's HEALTHCHECK answers on the default port, 8000: run its command against ours
        health = json.loads(_run([*engine, "image", "inspect", "--format", "{{json .Config.Healthcheck}}", tag]).stdout)
        test = [a.replace(":8000/", f":{http}/") for a in health["Test"][1:]]
        assert health["Test"][0] == "CMD" and "/v2/health/ready" in " ".join(test)
        assert _run([*engine, "exec", name, *test]).returncode == 0
        status = _run([*engine, "exec", name, "cat", "/proc/1/status"]).stdout
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:3] == [str(UID), str(UID)], uid_line
        session = ort_session(str(model_dir / "digits.onnx"), threads=1)
        x = np.random.default_rng(7).standard_normal((2, 3, 32, 32)).astype(np.float32)
        want = session.run(["logits"], {"input": x})[0]
        g = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc}")
        for model in models:
            hi = thttp.InferInput("input", list(x.shape), "FP32")
            hi.set_data_from_numpy(x, binary_data=True)
            np.testing.assert_allclose(client.infer(model, [hi]).as_numpy("logits"), want, rtol=1e-4, atol=1e-5)
            gi = tgrpc.InferInput("input", list(x.shape), "FP32")
            gi.set_data_from_numpy(x)
            np.testing.assert_allclose(g.infer(model, [gi]).as_numpy("logits"), want, rtol=1e-4, atol=1e-5)
        g.close()
        client.close()
        t0 = time.monotonic()
        _run([*engine, "stop", "-t", str(STOP_BOUND_S), name])
        stopped = time.monotonic() - t0
        code = _run([*engine, "inspect", "--format", "{{.State.ExitCode}}", name]).stdout.strip()
        assert code == "0", f"exit code {code} after stop"
        assert stopped < STOP_BOUND_S, f"stop took {stopped:.1f} s (SIGKILL after {STOP_BOUND_S} s)"
    finally:
        subprocess.run([*engine, "rm", "-f", name], capture_output=True, timeout=120)


def test_slim_image_serves_onnx_without_torch(images, models):
    engine, built = images
    tag = built["slim"]["tag"]
    probe = _run([*engine, "run", "--rm", "--entrypoint", "python", tag, "-c",
                  "import importlib.util as u; print(u.find_spec('torch') is None)"])
    assert probe.stdout.strip() == "True"
    onnx_only = models.parent / "onnx-only"
    onnx_only.mkdir(exist_ok=True)
    onnx_only.chmod(0o755)
    shutil.copy(models / "digits.onnx", onnx_only / "digits.onnx")
    (onnx_only / "digits.onnx").chmod(0o644)
    _check_container(engine, tag, onnx_only, ["digits"])


def test_full_image_serves_onnx_and_checkpoints(images, models):
    engine, built = images
    _check_container(engine, built["full"]["tag"], models, ["digits", "digits_ckpt"])


def test_slim_image_is_much_smaller(images):
    _, built = images
    assert built["slim"]["size_bytes"] < 0.6 * built["full"]["size_bytes"], built


def test_the_images_page_shows_the_commands_this_test_runs():
    readme = (ROOT / "docs" / "images-and-scale-out.md").read_text()
    for cmd in ("podman build --format docker --target slim -t dirac-deploy:slim .",
                "podman build --format docker --target full -t dirac-deploy .",
                'podman run -d --name dirac-deploy --network host -v "$PWD/models:/models:ro" dirac-deploy:slim',
                "podman stop -t 30 dirac-deploy", "make image-test"):
        assert cmd in readme, cmd
