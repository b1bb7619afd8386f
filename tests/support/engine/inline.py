"""Run one operation of the engine test's stack through the real Pulumi CLI.

    python3 -m tests.support.engine.inline PROJECT_DIR STACK OPERATION [--expect-no-changes]

OPERATION is preview, up, refresh or destroy. The CLI (`pulumi` on PATH) runs
the operation against the stack in PROJECT_DIR, with its Pulumi.yaml and
Pulumi.STACK.yaml, exactly as `pulumi up` does; the program runs in this
process, which serves it to the CLI as the language host (Pulumi's automation
API, `--client`), because the Python language host binary is not served by
the module proxy. One process per operation, as the CLI would start one.

Prints one JSON object: the CLI's stdout and stderr, its exit status, and the
steps the engine reported, by URN.
"""

from __future__ import annotations

import json
import sys

from pulumi import automation as auto

from tests.support.engine.program import main as program


def run(project_dir: str, stack_name: str, operation: str, expect_no_changes: bool) -> dict:
    steps: dict[str, list[str]] = {}

    def on_event(event: auto.events.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is None or pre.metadata.type == "pulumi:pulumi:Stack":
            return
        # A replacement is several steps on one URN (create-replacement, replace, delete-replaced).
        steps.setdefault(pre.metadata.urn, []).append(pre.metadata.op.value)

    workspace = auto.LocalWorkspace(work_dir=project_dir, program=program)
    stack = auto.Stack.select(stack_name, workspace)
    kwargs = {"on_event": on_event}
    if expect_no_changes and operation in ("preview", "up", "refresh"):
        kwargs["expect_no_changes"] = True
    try:
        result = getattr(stack, operation)(**kwargs)
    except auto.errors.CommandError as error:
        # The error's text is the CLI's exit code, stdout and stderr.
        return {"code": 1, "stdout": "", "stderr": "", "steps": steps, "error": str(error)}
    return {"code": 0, "stdout": result.stdout, "stderr": result.stderr, "steps": steps, "error": ""}


if __name__ == "__main__":
    project_dir, stack_name, operation, *flags = sys.argv[1:]
    print(json.dumps(run(project_dir, stack_name, operation, "--expect-no-changes" in flags)))
