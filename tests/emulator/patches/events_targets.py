"""EventBridge delivers to Lambda and Step Functions, matches as AWS does, and fires schedules.

AWS: a rule whose pattern matches an event delivers it to each target, asynchronously
(PutEvents has returned by then): a Lambda function (async invoke, allowed by the
function's resource policy for ``events.amazonaws.com``), a state machine
(StartExecution with the target's ``RoleArn``), ... The target receives the event
(``time`` in ISO 8601), or what ``Input`` / ``InputPath`` / ``InputTransformer``
make of it. A DISABLED rule delivers nothing. Patterns see arrays of objects
flattened (``{"tags": {"key": ["x"]}}`` matches ``"tags": [{"key": "x", ...}]``).
``rate(...)`` rules and EventBridge Scheduler schedules fire on their own.

Stock moto 5.2.5: PutEvents answers HTTP 500 (``NotImplementedError``) as soon as
a matching rule has a Lambda or Step Functions target; disabled rules deliver;
``tags.key`` never matches an array of objects; the event carries an epoch
``time`` and an ``ingestion-time`` field; schedules never fire.

Here:
  * Lambda targets: invoked asynchronously (see lambda_forward) with the event,
    when the function's policy has a statement for ``events.amazonaws.com``
    (and, if it has one, an ``AWS:SourceArn`` condition matching the rule).
  * Step Functions targets: StartExecution with a generated name, when the
    target's role allows ``states:StartExecution`` on the state machine (the
    role's policies, evaluated by iam_evaluation).
    A target that fails those checks is dropped with a warning in the
    emulator's log, as AWS counts a FailedInvocation and moves on.
  * Other targets (SQS, logs, buses...) go to moto's own code, given the whole
    event (moto's default rendering dropped ``account``) unless they have an
    InputTransformer.
  * Schedules: ``rate(N minute|minutes|hour|hours|day|days)`` rules and
    Scheduler schedules fire every N units after their creation, with AWS's
    "Scheduled Event" shape (rules) or the target's Input (Scheduler).
    ``cron(...)`` and ``at(...)`` expressions never fire here.
  * PutRule validates ``rate(...)`` as AWS documents ("Rate expressions
    reference", EventBridge user guide): a positive value, the singular unit for
    1 and the plural for more, so ``rate(1 minutes)`` and ``rate(5 minute)`` are
    ``ValidationException: Parameter ScheduleExpression is not valid.`` (stock
    moto accepted both, and an empty value).
  * TestEventPattern (stock moto: an empty answer) matches with the same
    matcher as delivery, so a test can hold a rule's pattern against a real
    event's shape.
  * A scheduled rule receives only its own schedule's events. Stock moto gives a
    rule without an event pattern an empty pattern, which matched *every* event
    put on the bus, so a ``rate(...)`` rule's Lambda target also ran on each
    CloudTrail or RDS event.
"""

from __future__ import annotations

import copy
import datetime
import fnmatch
import json
import re
import threading
import time
import uuid
from typing import Any

from moto.events import models as events_models
from moto.events.models import EventPattern, Rule
from moto.events.responses import EventsHandler
from moto.events.utils import EventTemplateParser

from ._common import iter_backends, log, wrap

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
# What PutRule accepts: 1 takes the singular unit, anything above 1 the plural.
VALID_RATE = re.compile(r"^rate\((1 (minute|hour|day)|([2-9]|[1-9][0-9]+) (minutes|hours|days))\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
TICK_SECONDS = 1.0


# --- event shape and patterns -------------------------------------------------------------


def _iso(value: Any) -> Any:
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def delivered_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as AWS hands it to targets."""
    out = {key: value for key, value in event.items() if key != "ingestion-time"}
    out["time"] = _iso(out.get("time"))
    return out


def _append(result: dict[str, Any], key: str, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    existing = result.get(key)
    if existing is None:
        result[key] = list(values)
    elif isinstance(existing, list):
        existing.extend(values)
    else:
        result[key] = [existing, *values]


def _flatten(node: Any, prefix: str = "", result: dict[str, Any] | None = None) -> dict[str, Any]:
    """moto's flattening, plus arrays of objects: each element's fields are collected
    under ``prefix.field`` as a list, which moto's matcher treats as "any of"."""
    if result is None:
        result = {}
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict) and value:
                _flatten(value, path, result)
            elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
                for item in value:
                    if isinstance(item, dict):
                        for sub_key, sub_value in _flatten(item, path).items():
                            _append(result, sub_key, sub_value)
                    else:
                        _append(result, path, item)
            else:
                result[path] = value
    return result


# --- targets ---------------------------------------------------------------------------------


def _json_path(document: Any, path: str) -> Any:
    """The subset of JSONPath that InputPath uses: ``$``, ``$.a.b``, ``$.a['b-c']``."""
    if path in ("$", ""):
        return document
    current = document
    for part in re.findall(r"\.([^.\[]+)|\['([^']+)'\]", path[1:]):
        key = part[0] or part[1]
        if not isinstance(current, dict) or key not in current:
            return None
        current = current[key]
    return current


def target_input(target: dict[str, Any], event: dict[str, Any]) -> str:
    if target.get("Input") is not None:
        return target["Input"]
    if target.get("InputPath"):
        return json.dumps(_json_path(event, target["InputPath"]))
    transformer = target.get("InputTransformer")
    if transformer:
        rendered = EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )
        return rendered if isinstance(rendered, str) else json.dumps(rendered)
    return json.dumps(event)


def _lambda_allows_events(function: Any, source_arn: str) -> bool:
    policy = getattr(function, "policy", None)
    for statement in list(getattr(policy, "statements", None) or []):
        principal = statement.get("Principal")
        service = principal.get("Service") if isinstance(principal, dict) else principal
        if service not in ("events.amazonaws.com", "*"):
            continue
        if statement.get("Effect", "Allow") != "Allow":
            continue
        condition = statement.get("Condition") or {}
        wanted = (condition.get("ArnLike") or {}).get("AWS:SourceArn") or (condition.get("ArnEquals") or {}).get("AWS:SourceArn")
        if wanted and not fnmatch.fnmatchcase(source_arn, wanted):
            continue
        return True
    return False


def _deliver_lambda(arn: str, payload: str, source_arn: str, check_permission: bool) -> None:
    from moto.awslambda.utils import get_backend

    from . import lambda_forward

    parts = arn.split(":")
    try:
        function = get_backend(parts[4], parts[3]).get_function(arn)
    except Exception:
        log.warning("events: target %s does not exist; event dropped", arn)
        return
    if check_permission and not _lambda_allows_events(function, source_arn):
        log.warning("events: %s does not allow events.amazonaws.com to invoke it (from %s); event dropped", arn, source_arn)
        return
    lambda_forward.invoke_async(function, payload.encode())


def _deliver_state_machine(arn: str, payload: str, role_arn: str | None) -> None:
    from moto.stepfunctions.responses import get_backend

    from . import iam_enforcement

    parts = arn.split(":")
    if not role_arn or not iam_enforcement.role_allows(role_arn, "states:StartExecution", arn):
        log.warning("events: role %s may not start %s; event dropped", role_arn, arn)
        return
    try:
        execution = get_backend(parts[4], parts[3]).start_execution(arn, name=str(uuid.uuid4()), execution_input=payload)
        log.info("events: started %s", getattr(execution, "execution_arn", arn))
    except Exception:
        log.exception("events: StartExecution of %s failed; event dropped", arn)


def deliver(target: dict[str, Any], event: dict[str, Any], source_arn: str, check_permission: bool = True) -> bool:
    """Deliver to a Lambda or Step Functions target; False for any other kind."""
    arn = target.get("Arn", "")
    service = arn.split(":")[2] if arn.count(":") >= 5 else ""
    if service not in ("lambda", "states"):
        return False
    payload = target_input(target, event)
    if service == "lambda":
        _deliver_lambda(arn, payload, source_arn, check_permission)
    else:
        # AWS runs targets after PutEvents returns; starting the execution here is
        # quick (the execution itself runs on its own thread).
        _deliver_state_machine(arn, payload, target.get("RoleArn"))
    return True


# --- schedules -------------------------------------------------------------------------------


def rate_seconds(expression: str | None) -> int | None:
    match = _RATE.match((expression or "").strip())
    if not match:
        return None
    unit = match.group(2).rstrip("s")
    return int(match.group(1)) * _UNIT_SECONDS[unit]


class _Scheduler:
    def __init__(self) -> None:
        self.next_fire: dict[str, float] = {}

    def _due(self, key: str, period: int, now: float) -> bool:
        when = self.next_fire.get(key)
        if when is None:
            self.next_fire[key] = now + period
            return False
        if now >= when:
            self.next_fire[key] = when + period if when + period > now else now + period
            return True
        return False

    def tick(self) -> None:
        now = time.time()
        seen: set[str] = set()
        for account, region, backend in iter_backends(events_models.events_backends):
            for bus in list(backend.event_buses.values()):
                for rule in list(bus.rules.values()):
                    period = rate_seconds(getattr(rule, "scheduled_expression", None))
                    if period is None or rule.state != "ENABLED":
                        continue
                    seen.add(rule.arn)
                    if self._due(rule.arn, period, now):
                        event = {
                            "version": "0",
                            "id": str(uuid.uuid4()),
                            "detail-type": "Scheduled Event",
                            "source": "aws.events",
                            "account": account,
                            "time": now,
                            "region": region,
                            "resources": [rule.arn],
                            "detail": {},
                        }
                        try:
                            rule.send_to_targets(event)
                        except Exception:
                            log.exception("events: scheduled delivery of %s failed", rule.arn)
        try:
            from moto.scheduler.models import scheduler_backends
        except ImportError:  # pragma: no cover
            scheduler_backends = {}
        for _account, _region, backend in iter_backends(scheduler_backends):
            for group in list(backend.schedule_groups.values()):
                for schedule in list(group.schedules.values()):
                    period = rate_seconds(schedule.schedule_expression)
                    if period is None or schedule.state != "ENABLED":
                        continue
                    seen.add(schedule.arn)
                    if self._due(schedule.arn, period, now):
                        target = dict(schedule.target or {})
                        target.setdefault("Input", "{}")
                        try:
                            if not deliver(target, {}, schedule.arn, check_permission=False):
                                log.warning("events: schedule %s target %s is not supported here", schedule.arn, target.get("Arn"))
                        except Exception:
                            log.exception("events: schedule %s failed", schedule.arn)
        for key in [k for k in self.next_fire if k not in seen]:
            del self.next_fire[key]

    def run(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            try:
                self.tick()
            except Exception:  # a half-built backend must not stop the clock
                log.exception("events: schedule tick failed")


def _own_scheduled_event(rule: Any, event: dict[str, Any]) -> bool:
    return (event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"
            and rule.arn in (event.get("resources") or []))


_scheduler_started = False


def apply() -> None:
    global _scheduler_started
    EventPattern._flatten_dict = staticmethod(_flatten)  # type: ignore[method-assign]
    events_models.EventsBackend._RATE_REGEX = VALID_RATE  # type: ignore[attr-defined]

    def test_event_pattern(self: EventsHandler) -> str:
        pattern = EventPattern.load(self._get_param("EventPattern"))
        return json.dumps({"Result": bool(pattern.matches_event(json.loads(self._get_param("Event"))))})

    EventsHandler.test_event_pattern = test_event_pattern  # type: ignore[method-assign]

    @wrap(Rule, "send_to_targets")
    def send_to_targets(original, self, original_event, transform_input=True):  # type: ignore[no-untyped-def]
        if self.state != "ENABLED" or not self.event_pattern.matches_event(original_event):
            return None
        if getattr(self, "scheduled_expression", None) and not _own_scheduled_event(self, original_event):
            # A rule has an event pattern or a schedule, never both: a scheduled rule receives only
            # its schedule's events. (moto's empty pattern matched every event put on the bus.)
            return None
        event = delivered_event(original_event)
        from . import faults

        twice = faults.take("events:PutEvents", {"duplicate-delivery"}) is not None
        rest = []
        for target in list(self.targets):
            try:
                if not deliver(target, event, self.arn):
                    rest.append(target)
                elif twice:
                    deliver(target, event, self.arn)
            except Exception:
                log.exception("events: delivery of %s to %s failed", self.arn, target.get("Arn"))
        # moto's own targets: with an InputTransformer moto renders it; otherwise hand them the
        # whole event (moto's default rendering drops "account"), minus moto's ingestion-time.
        transformed = [t for t in rest if t.get("InputTransformer")]
        whole = [t for t in rest if not t.get("InputTransformer")]
        for targets, transform in ((transformed, True), (whole, False)):
            if targets:
                view = copy.copy(self)
                view.targets = targets
                event_for_moto = {k: v for k, v in original_event.items() if k != "ingestion-time"}
                original(view, event_for_moto, transform and transform_input)
        return None

    if not _scheduler_started:
        _scheduler_started = True
        threading.Thread(target=_Scheduler().run, name="events-schedules", daemon=True).start()
