"""Pulumi program: a private, TLS- and password-protected registry that every node trusts."""

import sys

# Before anything else is imported: the program uses what Python 3.11 added.
if sys.version_info < (3, 11):  # noqa: UP036  (the program says so, instead of failing somewhere)
    raise SystemExit(
        f"registry: this program needs Python 3.11 or later, and runs on {sys.version.split()[0]} "
        f"({sys.executable}); install 3.11, then make the virtualenv again: rm -rf venv && pulumi install"
    )

from registry.program import run

run()
