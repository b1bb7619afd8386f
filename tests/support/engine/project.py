"""A copy of the project in a temporary folder, driven by the real Pulumi CLI.

The CLI, its state (a local file backend) and its plugins' home are the
test's own: PULUMI_HOME, the backend folder and the passphrase never touch the
user's. Config is set with `pulumi config set`, as the README tells users to.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
# The CLI reads the project file (name, config schema); the program runs from this checkout.
PROJECT_FILES = ("Pulumi.yaml",)


@dataclass
class Operation:
    """What one `pulumi preview/up/refresh/destroy` did."""

    code: int
    stdout: str
    stderr: str
    error: str
    steps: dict[str, list[str]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join((self.stdout, self.stderr, self.error))

    def changes(self) -> dict[str, str]:
        """Resource name -> create, update, replace or delete, for every resource the run changed.

        Names are the last part of the URN; steps that change nothing (same, read) are left out.
        """
        found = {}
        for urn, ops in self.steps.items():
            name = urn.rsplit("::", 1)[1]
            if any("replace" in op for op in ops):
                found[name] = "replace"
            else:
                kinds = [op for op in ops if op in ("create", "update", "delete")]
                if kinds:
                    found[name] = kinds[-1]
        return found


def _paths(key: str, value: Any):
    """(`pulumi config set --path` path, leaf value) for every leaf of `value`."""
    items = enumerate(value) if isinstance(value, list) else value.items()
    for index, item in items:
        path = f"{key}[{index}]" if isinstance(value, list) else f"{key}.{index}"
        if isinstance(item, (list, dict)):
            yield from _paths(path, item)
        else:
            yield path, item


def checkout(commit: str, folder: Path) -> Path:
    """The repository's files at `commit` (a release before this one), extracted into `folder`."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, timeout=60)
    assert archive.returncode == 0, f"this test needs the repository's history: {archive.stderr.decode()}"
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


class EngineProject:
    def __init__(self, bin_dir: Path, root: Path, kubeconfig: Path, stack: str = "engine"):
        self.dir = root / "project"
        self.stack = stack
        self.dir.mkdir(parents=True)
        for name in PROJECT_FILES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, self.dir / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, self.dir / name)
        self.state = root / "state"
        self.state.mkdir()
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PULUMI_HOME": str(root / "pulumi-home"),
            "PULUMI_BACKEND_URL": f"file://{self.state}",
            "PULUMI_CONFIG_PASSPHRASE": secrets.token_hex(16),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            # A plugin that is not built here must fail, never be downloaded.
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": str(ROOT),
        }

    # ---- the CLI -------------------------------------------------------------

    def cli(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["pulumi", *args], cwd=self.dir, env=self.env, input=stdin, capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def create_stack(self) -> None:
        self.cli("login", f"file://{self.state}")
        self.cli("stack", "init", self.stack, "--secrets-provider", "passphrase")

    def set(self, key: str, value: Any, secret: bool = False, raw: bool = False) -> None:
        """`pulumi config set [--secret] KEY` with the value on stdin, as the README does.

        A plain list is set element by element, and field by field, with
        `pulumi config set --path 'KEY[i].field' VALUE`, as the README shows for
        nodes. A secret list or map is stored as its JSON text, which the
        program reads back with `require_secret_object`. The CLI trims trailing
        newlines from stdin unless `raw`.
        """
        if isinstance(value, (list, dict)) and not secret:
            self.cli("config", "rm", key, "--stack", self.stack, check=False)
            for path, item in _paths(key, value):
                self.cli("config", "set", "--path", path, str(item), "--stack", self.stack)
            return
        text = json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)
        flags = ["--secret"] if secret else ["--plaintext"]
        if raw:
            flags.append("--raw")
        self.cli("config", "set", *flags, key, "--stack", self.stack, stdin=text)

    def remove(self, key: str) -> None:
        self.cli("config", "rm", key, "--stack", self.stack)

    def outputs(self, show_secrets: bool = False) -> dict:
        args = ["stack", "output", "--json", "--stack", self.stack]
        if show_secrets:
            args.append("--show-secrets")
        return json.loads(self.cli(*args).stdout)

    def export(self) -> str:
        return self.cli("stack", "export", "--stack", self.stack).stdout

    # ---- operations that run the program --------------------------------------

    def run(
        self, operation: str, expect_no_changes: bool = False, timeout: float = 900,
        code: Path = ROOT, runner: str = "tests.support.engine.inline",
    ) -> Operation:
        """One operation, with the program of the checkout at `code` (another
        release's, say, whose `runner` module may lie elsewhere)."""
        args = [sys.executable, "-m", runner, str(self.dir), self.stack, operation]
        if expect_no_changes:
            args.append("--expect-no-changes")
        env = {**self.env, "PYTHONPATH": str(code)}
        result = subprocess.run(args, cwd=code, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"{operation} did not run:\n{result.stdout}\n{result.stderr}")
        return Operation(**json.loads(result.stdout.strip().splitlines()[-1]))

    def run_release(self, operation: str, release: Path, runner: str = "tests.support.engine.inline") -> Operation:
        """One operation with another release's program and its project file, which declares only
        that release's keys; this checkout's project file is back afterwards."""
        shutil.copy(release / "Pulumi.yaml", self.dir / "Pulumi.yaml")
        try:
            return self.run(operation, code=release, runner=runner)
        finally:
            shutil.copy(ROOT / "Pulumi.yaml", self.dir / "Pulumi.yaml")

    def preview(self, **kwargs) -> Operation:
        return self.run("preview", **kwargs)

    def up(self, **kwargs) -> Operation:
        return self.run("up", **kwargs)

    def refresh(self, **kwargs) -> Operation:
        return self.run("refresh", **kwargs)

    def destroy(self, **kwargs) -> Operation:
        return self.run("destroy", **kwargs)
