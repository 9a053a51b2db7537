"""Print what the slim serving image installs besides the package itself (installed with --no-deps):
pyproject.toml's dependencies without torch, plus onnxruntime and the `serve` extra. pyproject.toml stays the
one place versions are declared; constraints.txt pins them at install."""

import re
import sys
import tomllib

project = tomllib.load(open(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
onnxruntime = [d for d in extras["export"] if re.match(r"onnxruntime\b", d)]
wanted = [d for d in project["dependencies"] if not re.match(r"torch\b", d)] + onnxruntime + extras["serve"]
print("\n".join(wanted))
