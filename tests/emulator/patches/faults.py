"""Fault injection: chosen calls fail the way AWS calls do fail, so a test can show that the
product retries what is transient and rolls back what is not.

AWS: any call can fail transiently. Some failures are not errors at all: PutEvents answers
HTTP 200 with ``FailedEntryCount`` > 0 and an ``ErrorCode`` per failed entry (``InternalFailure``
and ``ThrottlingException`` are the retryable ones, PutEvents API reference), and a Step
Functions ``events:putEvents`` task then fails with ``EventBridge.FailedEntry`` (Step Functions
developer guide, "Add EventBridge events with Step Functions").

Stock moto never fails a valid call.

Here, a control route (not an AWS API, served by launch.py) arms faults; each matches calls by ``service:Action``
and is used up after ``count`` matching calls:

    POST   /_emulator/faults  {"faults": [{"action": "events:PutEvents", "fault": "failed-entry", "count": 1}]}
    GET    /_emulator/faults  the armed faults with their remaining counts, and how often each fired
    DELETE /_emulator/faults  disarm all

Fault kinds:
  * ``failed-entry`` (``events:PutEvents`` only): HTTP 200, every entry failed with
    ``InternalFailure``.
  * ``duplicate-delivery`` (``sns:Publish`` only): the next message published (by anyone, AWS
    services included) is delivered twice to each Lambda subscription, with the same message ID,
    as SNS's at-least-once delivery may (SNS developer guide, "Message delivery"); ``count`` counts
    deliveries.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from moto.events.responses import EventsHandler

from ._common import STATE_LOCK, wrap

KINDS = {"failed-entry": {"events:PutEvents"}, "duplicate-delivery": {"sns:Publish"}}


@dataclass
class Fault:
    action: str
    fault: str
    count: int = 1
    fired: int = 0


_armed: list[Fault] = []


class FaultError(ValueError):
    pass


def arm(specs: list[dict[str, Any]]) -> None:
    faults = []
    for spec in specs:
        try:
            fault = Fault(action=spec["action"], fault=spec["fault"], count=int(spec.get("count", 1)))
        except (KeyError, TypeError, ValueError) as error:
            raise FaultError(f"a fault needs 'action' and 'fault' (and an integer 'count'): {spec!r}") from error
        if fault.fault not in KINDS:
            raise FaultError(f"unknown fault {fault.fault!r}; known: {sorted(KINDS)}")
        if fault.action not in KINDS[fault.fault]:
            raise FaultError(f"fault {fault.fault!r} applies to {sorted(KINDS[fault.fault])}, not {fault.action!r}")
        faults.append(fault)
    with STATE_LOCK:
        _armed[:] = faults


def take(action: str, fault: str) -> bool:
    """Whether this call of ``action`` is to fail with ``fault`` (using one up)."""
    with STATE_LOCK:
        for armed in _armed:
            if armed.action == action and armed.fault == fault and armed.count > armed.fired:
                armed.fired += 1
                return True
    return False


def control(method: str, body: bytes) -> tuple[str, dict[str, Any]]:
    """(status, answer) of the control route: POST arms, DELETE disarms, GET lists."""
    try:
        if method == "POST":
            arm((json.loads(body or b"{}")).get("faults") or [])
        elif method == "DELETE":
            arm([])
        elif method != "GET":
            return "405 Method Not Allowed", {"message": f"{method} is not supported here"}
    except (FaultError, ValueError, AttributeError) as error:
        return "400 Bad Request", {"message": str(error)}
    with STATE_LOCK:
        return "200 OK", {"faults": [asdict(f) for f in _armed]}


def apply() -> None:
    # Calls through the API only: the emulator's own events (CloudTrail, RDS) never use a fault up.
    @wrap(EventsHandler, "put_events")
    def put_events(original, self):  # type: ignore[no-untyped-def]
        if take("events:PutEvents", "failed-entry"):
            entries = [{"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure."}
                       for _ in self._get_param("Entries") or []]
            return json.dumps({"FailedEntryCount": len(entries), "Entries": entries})
        return original(self)
