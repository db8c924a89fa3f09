#!/usr/bin/env bash
# The virtual environment of the interop tests (pytest -m vision): torchvision and timm beside a torch they import
# with. PyPI's torchvision wheels are CUDA builds that fail to import next to the CPU torch 2.13 of the main
# environment ("operator torchvision::nms does not exist"), so they live here, apart, with torch 2.14.1 +
# torchvision 0.29.1 (CUDA builds that run on the CPU; ~5.5 GB, which pip on Python 3.11 takes from the machine's
# wheel store). The project is installed editable, so the tests run against this checkout. Nothing downloads
# weights: the tests build every reference model with random initialisation.
# Idempotent: a complete environment is left as it is. Usage: bash scripts/install-vision-env.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-vision}"
torch_version=2.14.1
torchvision_version=0.29.1

complete() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$torch_version" "$torchvision_version" <<'PYTHON' 2>/dev/null
import sys
import timm, torch, torchvision  # noqa: F401  (all three must import side by side)
import nasscale, pytest  # noqa: F401
assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__
assert torchvision.__version__.split("+")[0] == sys.argv[2], torchvision.__version__
PYTHON
}

if complete; then
    exit 0
fi
python3 -m venv "$venv"
# The folder stays out of git without an entry in .gitignore (as virtualenv and Python 3.13's venv do).
echo "*" > "$venv/.gitignore"
# One resolution for everything, so that no other torch comes in through a dependency.
"$venv/bin/python" -m pip install -q "torch==$torch_version" "torchvision==$torchvision_version" timm -e '.[test]'
complete || { echo "install-vision-env.sh: $venv is incomplete after the install" >&2; exit 1; }
