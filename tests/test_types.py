"""mypy over the package, configured in pyproject.toml (strict on the light core): the contracts between the
stages are stated in annotations and checked, as Optuna and torchvision do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def test_the_package_type_checks():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPOSITORY, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
