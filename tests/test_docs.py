"""The README's walk-through and every runnable block in docs/, run as written: every ```bash and ```python
block, in order (README first, then the docs pages by name), in one bash session in a fresh directory that
holds what `make demo` leaves (`.venv` linked, `demo-out/` from `dirac-deploy demo`).

Python blocks run as `python - <<'EOF'` in the same session (same directory, same activated venv). A block
that cannot run here carries `<!-- readme-test: skip (reason) -->` on the line before it; output listings use
plain ``` fences and are not run. Port 8000/8001 become free ports, so the test never collides with a server
the user runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from serving import free_port

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"(?P<marker><!-- readme-test: skip \((?P<why>[^)]*)\) -->\n)?```(?P<lang>bash|python)\n(?P<body>.*?)```",
                   re.S)


def readme_blocks(text: str) -> list[tuple[str, str, str | None]]:
    """(language, code, skip reason or None) for every bash/python block, in order."""
    return [(m["lang"], m["body"], m["why"]) for m in FENCE.finditer(text)]


def walkthrough_script(blocks, http_port: int, grpc_port: int) -> str:
    lines = ["set -euo pipefail", "set -m"]  # job control: `kill %1` / `wait %1` as a user types them
    for i, (lang, body, skip) in enumerate(blocks):
        if skip is not None:
            continue
        body = body.replace("8000", str(http_port)).replace("8001", str(grpc_port))
        lines.append(f"echo '--- README block {i} ({lang})' >&2")
        if lang == "bash":
            lines.append(body)
        else:
            lines.append(f"python - <<'README_PY_EOF'\n{body}README_PY_EOF")
    return "\n".join(lines) + "\n"


DOCS = ROOT / "docs"


def doc_pages() -> list[Path]:
    """The README, then every page under docs/ by name: the order their blocks run in."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def all_blocks() -> list[tuple[str, str, str | None]]:
    return [b for page in doc_pages() for b in readme_blocks(page.read_text())]


def test_every_block_is_run_or_says_why_not():
    readme = readme_blocks((ROOT / "README.md").read_text())
    assert len(readme) >= 6 and sum(skip is None for _, _, skip in readme) >= 5
    for page in doc_pages():
        for lang, body, skip in readme_blocks(page.read_text()):
            assert skip is None or len(skip) > 10, f"{page.name}: a skipped block needs a reason: {body[:60]!r}"


def test_the_readme_links_every_docs_page_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220, "the README points to docs/; details belong there"
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name})" in readme, f"the README does not link docs/{page.name}"
    for page in doc_pages():
        for target in re.findall(r"\]\(([^)#:]+\.(?:md|png|json|py|sh|yaml))(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).resolve().exists(), f"{page.name} links {target}, which does not exist"


@pytest.mark.slow
@pytest.mark.e2e
def test_readme_walkthrough_runs_as_written(tmp_path):
    venv = ROOT / ".venv"
    if not (venv / "bin" / "dirac-deploy").exists():
        pytest.skip("needs the checkout's .venv from `make install`")
    (tmp_path / ".venv").symlink_to(venv)
    (tmp_path / "README.md").symlink_to(ROOT / "README.md")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(NO_COLOR="1", COLUMNS="160")
    demo = subprocess.run([str(venv / "bin" / "dirac-deploy"), "-q", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert (tmp_path / "demo-out" / "digits_diracnet.pt7").is_file()
    script = walkthrough_script(all_blocks(), free_port(), free_port())
    (tmp_path / "walkthrough.sh").write_text(script)
    proc = subprocess.run(["bash", "walkthrough.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    out = proc.stdout
    assert "refused, nothing written" in out and "ready" in out and "stopped, exit 0" in out
    assert "digits-int8 [" in out and "gRPC [" in out
    work = tmp_path / "demo-out"  # the walk-through works there, leaving the checkout clean
    assert json.loads((work / "fold.json").read_text())["schema"] == "dirac-deploy/fold"
    for f in ("plain.pth", "layers.png", "digits.onnx", "digits-int8.xml", "digits-int8.bin", "models/digits/config.pbtxt",
              "bench-out/bench.json", "bench-out/bench.png", "plain2.pth", "plain2.onnx", "plain2-int8.xml"):
        assert (work / f).is_file(), f
    assert sorted(p.name for p in tmp_path.iterdir()) == [".venv", "README.md", "demo-out", "walkthrough.sh"]
    bench = json.loads((work / "bench-out" / "bench.json").read_text())
    assert all(row["best_alternative"] for row in bench["rows"])  # a checkpoint: every headline column filled
