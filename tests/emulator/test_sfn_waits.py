"""The wait_scale setting (patches/sfn_waits.py): a Wait state lasts its seconds times the scale,
and a setting out of (0, 1] is ignored, so the wait lasts what the definition says."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator

import control
import pytest
from conftest import new_account, session_factory, start_emulator

WAIT_SECONDS = 2
RUNNING = {"execute_state_machine": True}


@pytest.fixture(scope="module")
def emu() -> Iterator[dict[str, Any]]:
    process, ready = start_emulator("--watch-pid", str(os.getpid()), "--config", json.dumps({"stepfunctions": RUNNING}))
    url = f"http://127.0.0.1:{ready['port']}"
    try:
        yield {"url": url, "aws": session_factory(url)(new_account())}
        found = control.problems(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert not found, "the emulator met problems:\n" + "\n".join(found)


def waited(emu: dict[str, Any], stepfunctions: dict[str, Any]) -> float:
    """Seconds between the Wait state's entry and exit, in a run under ``stepfunctions`` settings."""
    control.route(emu["url"], "/moto-api/config", "POST", {"stepfunctions": stepfunctions})
    sfn = emu["aws"]("stepfunctions")
    definition = {"StartAt": "Pause", "States": {"Pause": {"Type": "Wait", "Seconds": WAIT_SECONDS, "End": True}}}
    machine = sfn.create_state_machine(name=f"pause-{time.monotonic_ns()}", definition=json.dumps(definition),
                                       roleArn=f"arn:aws:iam::{new_account()}:role/sfn")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    deadline = time.monotonic() + 30
    while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED"
    events = {e["type"]: e["timestamp"] for e in sfn.get_execution_history(executionArn=execution)["events"]}
    return (events["WaitStateExited"] - events["WaitStateEntered"]).total_seconds()


def test_a_scaled_wait_lasts_its_seconds_times_the_scale(emu: dict[str, Any]) -> None:
    seconds = waited(emu, {**RUNNING, "wait_scale": 0.25})
    assert WAIT_SECONDS * 0.25 <= seconds < WAIT_SECONDS, seconds


@pytest.mark.parametrize("scale", [0, 2, "fast", True])
def test_a_scale_out_of_range_is_ignored(emu: dict[str, Any], scale: Any) -> None:
    assert waited(emu, {**RUNNING, "wait_scale": scale}) >= WAIT_SECONDS
