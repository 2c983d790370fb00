"""API throttling by token buckets, per account and region, as AWS throttles; and a count of every
call by action (what a benchmark reports as "AWS calls").

AWS: each service throttles each account's requests per region with token buckets: a call takes
a token, a bucket holds at most ``size`` tokens and gains ``refill`` a second; a call that finds
its bucket empty fails at once, in the service's error shape (the figures and their sources are
in tests/emulator/README.md, "API throttling"):

  * Step Functions, one bucket per API action (quotas page, "Quotas related to API action
    throttling"): ``ThrottlingException``, HTTP 400.
  * EC2, one bucket per API action, sized by the action's category (EC2 developer guide, "Request
    throttling for the Amazon EC2 API"): ``RequestLimitExceeded``, HTTP 503.
  * ELB (API version 2), one bucket per action (ELB user guide, "Request throttling for the ELB
    API"): ``ThrottlingException`` "Rate exceeded", HTTP 400.
  * RDS, one bucket for all actions (RDS user guide, "Request throttling for the Amazon RDS
    API"): ``ThrottlingException`` "Rate exceeded", HTTP 400.

Stock moto never throttles.

Here, off unless configured, so that ordinary tests are not slowed by retries. Configured by the
environment at start (``EMULATOR_THROTTLING=aws``: AWS's figures; or a JSON object as below), or
by a control route (not an AWS API, served by launch.py):

    POST   /_emulator/throttling  {"enabled": true, "buckets": {"elasticloadbalancing:Describe*": [40, 10]}}
    GET    /_emulator/throttling  the configuration, and the calls (all, and the product's: made
                                  with a role an AWS service assumes) and throttled calls by action
    DELETE /_emulator/throttling  off, and the counts cleared

``buckets`` overrides AWS's figures: keys ``service:Action`` or ``service:Prefix*`` (IAM prefixes:
``states``, ``ec2``, ``elasticloadbalancing``, ``rds``), values ``[size, refill per second]``. A
POST replaces the configuration, refills every bucket and clears the counts. Calls are counted
whether throttling is on or not.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ._common import STATE_LOCK, log

# moto's service names -> IAM prefixes.
SERVICES = {"stepfunctions": "states", "ec2": "ec2", "elbv2": "elasticloadbalancing", "rds": "rds",
            "awslambda": "lambda", "dynamodb": "dynamodb", "lambda": "lambda", "events": "events", "sns": "sns", "iam": "iam",
            "sts": "sts", "logs": "logs", "kms": "kms", "secretsmanager": "secretsmanager",
            "cloudwatch": "cloudwatch", "scheduler": "scheduler", "sqs": "sqs"}

# AWS's default buckets, [size, refill per second], most specific key first. A service absent
# here is not throttled.
AWS_BUCKETS: dict[str, list[float]] = {
    # Step Functions, Standard workflows, us-east-1 (quotas page, API action throttling).
    "states:StartExecution": [1300, 300],
    "states:DescribeExecution": [250, 15],
    "states:DescribeStateMachine": [200, 20],
    "states:ListExecutions": [200, 5],
    "states:GetExecutionHistory": [400, 20],
    "states:StopExecution": [1000, 200],
    "states:SendTaskSuccess": [3000, 500],
    "states:SendTaskFailure": [3000, 500],
    "states:SendTaskHeartbeat": [3000, 500],
    "states:*": [100, 1],
    # EC2: non-mutating (Describe*) and mutating actions.
    "ec2:Describe*": [100, 20],
    "ec2:*": [50, 5],
    # ELB API version 2: non-mutating (Describe*) and the other actions.
    "elasticloadbalancing:Describe*": [40, 10],
    "elasticloadbalancing:*": [20, 5],
    # RDS: one bucket for the whole API.
    "rds:*": [300, 12],
}

# Services whose one bucket all actions share (the others have one bucket per action).
SHARED = {"rds"}

ERRORS = {"ec2": ("RequestLimitExceeded", "Request limit exceeded.", 503),
          "states": ("ThrottlingException", "Rate exceeded", 400),
          # Lambda Invoke API reference, Errors: TooManyRequestsException, HTTP 429.
          "lambda": ("TooManyRequestsException", "Rate Exceeded.", 429)}
DEFAULT_ERROR = ("ThrottlingException", "Rate exceeded", 400)


@dataclass
class Bucket:
    size: float
    refill: float
    tokens: float
    at: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.refill)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ConfigError(ValueError):
    pass


_config: dict[str, Any] = {"enabled": False, "buckets": {}}
_buckets: dict[tuple[str, str, str], Bucket] = {}
calls: Counter[str] = Counter()
product_calls: Counter[str] = Counter()  # made with a role that an AWS service assumes (the stack's)
throttled: Counter[str] = Counter()


def figures(action: str) -> tuple[str, list[float]] | None:
    """The bucket key and [size, refill] that govern ``service:Action``, or None."""
    service = action.split(":", 1)[0]
    table = {**AWS_BUCKETS, **_config["buckets"]}
    keys = [action] + sorted((k for k in table if k.endswith("*") and action.startswith(k[:-1])),
                             key=len, reverse=True)
    for key in keys:
        if key in table:
            return (f"{service}:*" if service in SHARED else action), table[key]
    return None


def configure(config: dict[str, Any]) -> None:
    if not isinstance(config, dict):
        raise ConfigError("the throttling configuration is a JSON object")
    buckets = config.get("buckets") or {}
    for key, value in buckets.items():
        if ":" not in key or not (isinstance(value, list) and len(value) == 2
                                  and all(isinstance(v, (int, float)) and v >= 0 for v in value) and value[0] >= 1):
            raise ConfigError(f"bucket {key!r}: want 'service:Action' (or 'service:Prefix*') -> [size >= 1, refill >= 0]")
    with STATE_LOCK:
        _config.update(enabled=bool(config.get("enabled", True)), buckets=dict(buckets))
        _buckets.clear()
        calls.clear()
        product_calls.clear()
        throttled.clear()


def admit(account: str, region: str, action: str, product: bool = False) -> bool:
    """Counts the call; whether its bucket had a token (always, while throttling is off)."""
    with STATE_LOCK:
        calls[action] += 1
        if product:
            product_calls[action] += 1
        if not _config["enabled"]:
            return True
        found = figures(action)
        if found is None:
            return True
        key, (size, refill) = found
        now = time.monotonic()
        bucket = _buckets.setdefault((account, region, key), Bucket(size, refill, size, now))
        if bucket.take(now):
            return True
        throttled[action] += 1
        return False


def state() -> dict[str, Any]:
    with STATE_LOCK:
        return {**_config, "calls": dict(calls), "product_calls": dict(product_calls), "throttled": dict(throttled)}


def control(method: str, body: bytes) -> tuple[str, dict[str, Any]]:
    """(status, answer) of the control route: POST configures, DELETE turns off, GET reads."""
    try:
        if method == "POST":
            configure(json.loads(body or b"{}"))
        elif method == "DELETE":
            configure({"enabled": False})
        elif method != "GET":
            return "405 Method Not Allowed", {"message": f"{method} is not supported here"}
    except (ConfigError, ValueError) as error:
        return "400 Bad Request", {"message": str(error)}
    return "200 OK", state()


def action_of(response: Any) -> str:
    """``service:Action`` (IAM prefix) of the call moto's ``response`` is handling."""
    service = SERVICES.get(response.service_name or "", response.service_name or "")
    return f"{service}:{response._get_action()}"


def injected_error(response: Any, code: str, message: str, status: int) -> Any:
    """An error the emulator chose to answer (a throttled or faulted call), in the service's shape;
    marked so that launch.py does not count its 5xx as a crash."""
    from .iam_evaluation import service_error

    error = service_error(action_of(response).split(":", 1)[0], code, message, status,
                          response.headers.get("Content-Type") or "")
    error.headers["x-emulator-injected"] = "1"
    return error


def throttling_error(response: Any) -> Any:
    return injected_error(response, *ERRORS.get(action_of(response).split(":", 1)[0], DEFAULT_ERROR))


def check(response: Any) -> None:
    """Raised as the service answers a throttled call (a hook of every moto API call)."""
    from .iam_evaluation import _caller_of

    try:
        product = _caller_of(response).product
    except Exception:  # an unsigned or unknown caller: not the product's
        product = False
    if not admit(response.current_account, response.region, action_of(response), product):
        raise throttling_error(response)


def apply() -> None:
    from ._common import CALL_HOOKS

    CALL_HOOKS.append(check)
    configured = os.environ.get("EMULATOR_THROTTLING", "").strip()
    if configured:
        try:
            configure({"enabled": True} if configured == "aws" else json.loads(configured))
        except (ConfigError, ValueError) as error:
            log.error("EMULATOR_THROTTLING ignored: %s", error)
