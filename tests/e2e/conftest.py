"""The whole application, started the way a developer starts it (scripts/local-stack up), on free
ports and in a state directory of its own, so it never meets a stack the developer has running.
The stack is taken down at the end of the session (and, should pytest die, by the stack's own
reaper, which watches this process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from local_stack import scenario  # noqa: E402
from local_stack.processes import listening  # noqa: E402

STACK_NAME = "tidb-privatelink-e2e"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state_dir = tmp_path_factory.mktemp("local-stack")
    command = [str(ROOT / "scripts/local-stack")]
    up = subprocess.run(
        [*command, "up", "--state-dir", str(state_dir), "--port", "0", "--dns-port", "0", "--stack-name", STACK_NAME,
         "--no-reload", "--owner-pid", str(os.getpid())],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    if up.returncode != 0:
        pytest.fail(f"scripts/local-stack up failed:\n{up.stdout}")
    state = json.loads((state_dir / "state.json").read_text())
    state["state_dir"] = str(state_dir)
    try:
        yield state
    finally:
        down = subprocess.run([*command, "down", "--state-dir", str(state_dir)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ports = [state["port"], state["dns_port"], *[f["port"] for f in state["functions"]]]
        assert down.returncode == 0, down.stdout
        assert not [p for p in ports if listening(p)], f"still listening after down: {down.stdout}"


@pytest.fixture(scope="session")
def aws(stack: dict[str, Any]) -> Callable[[str], Any]:
    return scenario.clients(stack)


@pytest.fixture(scope="session")
def network(aws: Callable[[str], Any]) -> scenario.Network:
    return scenario.create_network(aws, "orders")
