"""The engine layer: the real Pulumi CLI and pulumi-kubernetes against a real control plane."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

TOOLCHAIN = Path(__file__).resolve().parents[2] / "engine" / "toolchain.sh"
# What unavailable() found in this session, for the summary at the end of the run.
REPORTED: list[str] = []


def toolchain_dir() -> Path:
    """The folder of built binaries; skips (outside CI) or fails (in CI) when it is not built.

    Tests never build it themselves (CONTRIBUTING.md says how long that takes);
    `.ci/run` builds it before the suite runs.
    """
    folder = Path(subprocess.run([str(TOOLCHAIN), "--dir"], capture_output=True, text=True, check=True).stdout.strip())
    if not (folder / ".complete").exists():
        message = f"the engine toolchain is not built in {folder}; run {TOOLCHAIN} (CONTRIBUTING.md says how long it takes)"
        if os.environ.get("CI"):
            pytest.fail(message + " -- .ci/run must build it first", pytrace=False)
        pytest.skip(message)
    return folder


def unavailable(folder: Path) -> list[str]:
    """The parts of the chain the module proxy did not serve, with its answer, as toolchain.sh found them."""
    path = folder / "UNAVAILABLE"
    found = path.read_text().splitlines() if path.exists() else []
    REPORTED[:] = found
    return found
