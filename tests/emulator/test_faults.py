"""Fault injection through /_emulator/faults."""

from __future__ import annotations

from typing import Any

import pytest

import control as control_routes


def control(url: str, method: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    return control_routes.route(url, "/_emulator/faults", method, body)


ENTRY = {"Source": "test", "DetailType": "t", "Detail": "{}"}


def test_a_failed_entry_fault_fails_the_next_put_events_only(emulator, aws) -> None:
    events = aws("events")
    assert control(emulator.url, "POST", {"faults": [{"action": "events:PutEvents", "fault": "failed-entry"}]})[0] == 200
    try:
        failed = events.put_events(Entries=[ENTRY, ENTRY])
        assert failed["FailedEntryCount"] == 2
        assert {e["ErrorCode"] for e in failed["Entries"]} == {"InternalFailure"}
        assert events.put_events(Entries=[ENTRY])["FailedEntryCount"] == 0
        assert control(emulator.url, "GET")[1]["faults"] == [
            {"action": "events:PutEvents", "fault": "failed-entry", "count": 1, "fired": 1}]
    finally:
        assert control(emulator.url, "DELETE") == (200, {"faults": []})


@pytest.mark.parametrize("spec", [
    {"action": "events:PutEvents", "fault": "melt"},
    {"action": "ec2:CreateVpc", "fault": "failed-entry"},
    {"fault": "failed-entry"},
    {"action": "events:PutEvents", "fault": "failed-entry", "count": "many"},
])
def test_a_bad_fault_is_refused_by_name_and_arms_nothing(emulator, spec) -> None:
    status, body = control(emulator.url, "POST", {"faults": [spec]})
    assert status == 400 and body["message"], body
    assert control(emulator.url, "GET")[1]["faults"] == []
