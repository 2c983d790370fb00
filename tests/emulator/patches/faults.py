"""Fault injection: chosen calls fail the way AWS calls do fail, so a test can show that the
product retries what is transient and rolls back what is not.

AWS: any call can fail transiently. Some failures are not errors at all: PutEvents answers
HTTP 200 with ``FailedEntryCount`` > 0 and an ``ErrorCode`` per failed entry (``InternalFailure``
and ``ThrottlingException`` are the retryable ones, PutEvents API reference), and a Step
Functions ``events:putEvents`` task then fails with ``EventBridge.FailedEntry`` (Step Functions
developer guide, "Add EventBridge events with Step Functions").

Stock moto never fails a valid call.

Here, a control route (not an AWS API, served by launch.py) arms faults; each matches calls by
``service:Action`` (IAM prefix) made through the API:

    POST   /_emulator/faults  {"faults": [{"action": "ec2:CreateSecurityGroup", "fault": "http-503",
                                           "nth": 2, "count": 1}]}
    GET    /_emulator/faults  the armed faults, how many matching calls each saw and how often it fired
    DELETE /_emulator/faults  disarm all

A POST replaces what is armed. A fault fires from the ``nth`` matching call (default 1) on, for
``count`` calls (default 1), or, with ``seconds``, for every matching call during that many seconds
after it first fired. With ``role`` (a role name), only calls made with that role's credentials
match.

Fault kinds:
  * ``failed-entry`` (``events:PutEvents`` only): HTTP 200, every entry failed with
    ``InternalFailure``.
  * ``duplicate-delivery``, delivered twice as at-least-once delivery may:
      - ``sns:Publish``: the next message published (by anyone, AWS services included) goes twice
        to each Lambda subscription, with the same message ID (SNS developer guide, "Message
        delivery"); ``count`` counts deliveries.
      - ``events:PutEvents``: the next event a rule matches (the emulator's CloudTrail and RDS
        events included) goes twice to each Lambda and Step Functions target, with the same event
        ID (EventBridge user guide: targets must be idempotent, an event may be delivered more
        than once); ``count`` counts rule deliveries.
      - ``lambda:InvokeFunction`` (a synchronous Invoke, a Step Functions Task's included): the
        function runs twice on the same payload, one run after the other, and the second run's
        answer is the one returned, as when a Task's answer is lost and its Retry runs it again.
  * ``throttling`` (any action): the service's throttling error, as throttling.py answers an empty
    bucket (EC2 ``RequestLimitExceeded`` 503, the others ``ThrottlingException`` 400).
  * ``http-500`` / ``http-503`` (any action): ``InternalError`` 500 / ``Unavailable`` 503 for EC2
    (EC2 API reference, "Error codes for the Amazon EC2 API": server errors), ``InternalFailure``
    500 / ``ServiceUnavailable`` 503 for the others (the services' "Common Errors"), in the
    service's shape; the call is not made.
  * ``hang`` (any action): the call is not made; the request is held until the client closes the
    connection (its timeout) or ``hold`` seconds pass (default 30, at most 300), then the
    connection is closed without an answer.
  * ``applied-then-dropped`` (any action): the call is made, then the connection is closed without
    an answer, as when a response is lost on the way back.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from moto.events.responses import EventsHandler

from ._common import CALL_HOOKS, STATE_LOCK, wrap

ANY = None  # a kind that applies to every action
KINDS: dict[str, set[str] | None] = {
    "failed-entry": {"events:PutEvents"},
    "duplicate-delivery": {"sns:Publish", "events:PutEvents", "lambda:InvokeFunction"},
    "throttling": ANY, "http-500": ANY, "http-503": ANY, "hang": ANY, "applied-then-dropped": ANY}
SERVER_ERRORS = {"http-500": {"ec2": ("InternalError", "An internal error has occurred.", 500),
                              # Lambda Invoke API reference, Errors: ServiceException, HTTP 500.
                              "lambda": ("ServiceException", "The AWS Lambda service encountered an internal "
                                                             "error.", 500)},
                 "http-503": {"ec2": ("Unavailable", "The server is overloaded and can't handle the request.", 503)}}
DEFAULT_SERVER_ERRORS = {"http-500": ("InternalFailure", "The request processing has failed because of an unknown "
                                                         "error, exception or failure.", 500),
                         "http-503": ("ServiceUnavailable", "The request has failed due to a temporary failure of "
                                                            "the server.", 503)}
MAX_HOLD = 300.0


class _Request(threading.local):
    """The HTTP request this thread serves (launch.py): its connection, whether to drop it, and
    whether the Invoke it makes is to run its function twice."""
    connection: socket.socket | None = None
    drop = False
    run_twice = False


current = _Request()


@dataclass
class Fault:
    action: str
    fault: str
    count: int = 1
    nth: int = 1
    seconds: float | None = None
    hold: float = 30.0
    role: str | None = None
    seen: int = 0
    fired: int = 0
    first_fired: float | None = None

    def due(self, now: float) -> bool:
        """Counts a matching call; whether the fault fires on it."""
        self.seen += 1
        if self.seen < self.nth:
            return False
        if self.seconds is not None:
            self.first_fired = now if self.first_fired is None else self.first_fired
            if now - self.first_fired >= self.seconds:
                return False
        elif self.fired >= self.count:
            return False
        self.fired += 1
        return True


_armed: list[Fault] = []


class FaultError(ValueError):
    pass


def _number(spec: dict[str, Any], name: str, default: Any, kind: type, low: float, high: float | None = None) -> Any:
    value = spec.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise FaultError(f"{name!r} must be a number, not {value!r}: {spec!r}")
    if value < low or (high is not None and value > high):
        raise FaultError(f"{name!r} must be between {low} and {high or 'any'}, not {value!r}: {spec!r}")
    return kind(value)


def parse(spec: Any) -> Fault:
    if not isinstance(spec, dict) or not isinstance(spec.get("action"), str) or not isinstance(spec.get("fault"), str):
        raise FaultError(f"a fault needs 'action' ('service:Action') and 'fault': {spec!r}")
    unknown = set(spec) - {"action", "fault", "count", "nth", "seconds", "hold", "role"}
    if unknown:
        raise FaultError(f"unknown fields {sorted(unknown)} in {spec!r}")
    action, kind = spec["action"], spec["fault"]
    if kind not in KINDS:
        raise FaultError(f"unknown fault {kind!r}; known: {sorted(KINDS)}")
    actions = KINDS[kind]
    if actions is not ANY and action not in actions:
        raise FaultError(f"fault {kind!r} applies to {sorted(actions)}, not {action!r}")
    if ":" not in action.strip(":"):
        raise FaultError(f"'action' must be 'service:Action', not {action!r}")
    if "hold" in spec and kind != "hang":
        raise FaultError(f"'hold' applies to the 'hang' fault only: {spec!r}")
    if not isinstance(spec.get("role", ""), str) or "/" in spec.get("role", ""):
        raise FaultError(f"'role' must be a role's name: {spec!r}")
    return Fault(action=action, fault=kind, count=_number(spec, "count", 1, int, 1),
                 nth=_number(spec, "nth", 1, int, 1), seconds=_number(spec, "seconds", None, float, 0),
                 hold=_number(spec, "hold", 30.0, float, 0, MAX_HOLD), role=spec.get("role") or None)


def arm(specs: Any) -> None:
    if not isinstance(specs, list):
        raise FaultError(f"'faults' must be a list, not {specs!r}")
    faults = [parse(spec) for spec in specs]
    with STATE_LOCK:
        _armed[:] = faults


def take(action: str, kinds: set[str], role: Callable[[], str | None] = lambda: None) -> str | None:
    """The fault of ``kinds`` this call of ``action`` (made with ``role()``) is to meet (using one
    up), or None. An action is named by its API operation or its IAM action (``lambda:Invoke`` or
    ``lambda:InvokeFunction``)."""
    from .iam_evaluation import ACTION_NAMES

    names = {action, ACTION_NAMES.get(action, action)}
    now = time.monotonic()
    with STATE_LOCK:
        for armed in _armed:
            if (armed.action in names and armed.fault in kinds and armed.role in (None, role())
                    and armed.due(now)):
                return armed.fault
    return None


def _role_of(response: Any) -> str | None:
    """The name of the role whose credentials made the call, if a role's."""
    from .iam_evaluation import _caller_of

    arn = _caller_of(response).arn
    return arn.split(":role/", 1)[1].rsplit("/", 1)[-1] if ":role/" in arn else None


def hold_of(action: str) -> float:
    with STATE_LOCK:
        return next((f.hold for f in _armed if f.action == action and f.fault == "hang"), 0.0)


def control(method: str, body: bytes) -> tuple[str, dict[str, Any]]:
    """(status, answer) of the control route: POST arms, DELETE disarms, GET lists."""
    try:
        if method == "POST":
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise FaultError('the body must be {"faults": [...]}')
            arm(request.get("faults") or [])
        elif method == "DELETE":
            arm([])
        elif method != "GET":
            return "405 Method Not Allowed", {"message": f"{method} is not supported here"}
    except (FaultError, ValueError) as error:
        return "400 Bad Request", {"message": str(error)}
    with STATE_LOCK:
        return "200 OK", {"faults": [asdict(f) for f in _armed]}


def _wait_for_close(connection: socket.socket | None, seconds: float) -> None:
    """Until the client closes ``connection`` (end of file) or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while connection is not None and (left := deadline - time.monotonic()) > 0:
        try:
            readable, _, _ = select.select([connection], [], [], min(left, 0.5))
            if readable and connection.recv(1, socket.MSG_PEEK) == b"":
                return
        except (OSError, ValueError):  # already closed
            return
        if readable:  # bytes we do not read: wait without spinning
            time.sleep(min(0.5, max(left, 0)))
    if connection is None:
        time.sleep(seconds)


def serving(connection: socket.socket | None) -> None:
    """launch.py: this thread now serves a request on ``connection``."""
    current.connection, current.drop, current.run_twice = connection, False, False


def dropped() -> bool:
    """launch.py, once the call is handled: whether a fault chose to close the connection
    unanswered (and if so, it is closed)."""
    if current.drop and current.connection is not None:
        try:
            current.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return current.drop


def check(response: Any) -> None:
    """A hook of every moto API call: the armed fault this call meets, if any."""
    from .throttling import action_of, injected_error, throttling_error

    action = action_of(response)
    if action == "lambda:Invoke":
        current.run_twice = take(action, {"duplicate-delivery"}, lambda: _role_of(response)) is not None
    kind = take(action, {"throttling", "http-500", "http-503", "hang", "applied-then-dropped"},
                lambda: _role_of(response))
    if kind is None:
        return
    if kind == "throttling":
        raise throttling_error(response)
    if kind in SERVER_ERRORS:
        service = action.split(":", 1)[0]
        raise injected_error(response, *SERVER_ERRORS[kind].get(service, DEFAULT_SERVER_ERRORS[kind]))
    current.drop = True
    if kind == "hang":
        _wait_for_close(current.connection, hold_of(action))
        raise injected_error(response, "Hang", "held, then dropped", 503)  # never sent: the connection is dropped


def apply() -> None:
    CALL_HOOKS.append(check)

    # Calls through the API only: the emulator's own events (CloudTrail, RDS) never use a fault up.
    @wrap(EventsHandler, "put_events")
    def put_events(original, self):  # type: ignore[no-untyped-def]
        if take("events:PutEvents", {"failed-entry"}):
            entries = [{"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure."}
                       for _ in self._get_param("Entries") or []]
            return json.dumps({"FailedEntryCount": len(entries), "Entries": entries})
        return original(self)
