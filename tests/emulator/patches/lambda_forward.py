"""Lambda invocations run the project's real functions, served by ``cargo lambda watch``.

AWS runs the function's code on every Invoke: a direct ``Invoke`` call, a Step
Functions Task whose ``Resource`` is the function's ARN (or
``arn:aws:states:::lambda:invoke``), an SNS subscription, an EventBridge
target. A function error comes back as HTTP 200 with ``X-Amz-Function-Error:
Unhandled`` and the runtime's ``{"errorType", "errorMessage"}`` as payload,
which is where Step Functions takes the error name that Retry/Catch match.

Stock moto 5.2.5 runs code only in Docker (none here; without it every invoke
returns ``FunctionError: Handled`` with "error running docker"), and its
SNS->Lambda event is a canned sample (``"TopicArn": "arn:aws:sns:EXAMPLE"``,
1970 timestamp, fake message attributes).

Here, ``LambdaFunction.invoke`` forwards to a ``cargo lambda watch`` server,
``POST <url>/2015-03-31/functions/<binary>/invocations``, for every function
that has a route in moto's runtime config (``POST /moto-api/config``)::

    {"lambda": {"use_docker": true,
                "forward": {"<function ARN or name>": {"url": "http://127.0.0.1:9101",
                                                       "name": "<cargo binary>",
                                                       "log": "<cargo lambda watch's log file>",
                                                       "grace_seconds": 300}}}}

Functions without a route keep moto's own behaviour. cargo lambda watch answers
a function error with HTTP 500 and the ``{"errorType","errorMessage"}`` body;
that becomes ``FunctionError: Unhandled`` with the body as payload, as on AWS.
A function that fails to build or exits while an invocation waits (seen in
cargo lambda watch's log) becomes ``FunctionError: Unhandled`` with
``Runtime.ExitError``, as on AWS, and the log's last lines as message; a server
that cannot be reached, or a function that does not answer within its
``Timeout`` becomes ``Runtime.Unavailable`` / ``Sandbox.Timedout`` (AWS's name
for a timeout). Only a function's first invocation gets ``grace_seconds`` more,
while its process starts (and cargo builds it if needed): Lambda's init phase
has its own limit, not the function's Timeout. Every later invocation has
exactly the configured Timeout, as in AWS.
``InvocationType: Event`` returns 202 at once and runs in the background, as
AWS's asynchronous invocation does; ``DryRun`` answers 204 without running.

A failed asynchronous invocation is retried as Lambda retries it: up to the function's
``MaximumRetryAttempts`` (PutFunctionEventInvokeConfig; 2 without one), AWS's 1 and 2 minute
waits shortened to ``{"lambda": {"async_retry_delays": [1, 2]}}`` seconds (the default). Once the
retries are spent, the documented invocation record (``version``, ``timestamp``,
``requestContext`` with ``condition: RetriesExhausted`` and ``approximateInvokeCount``,
``requestPayload``, ``responseContext``, ``responsePayload``) goes to the ``OnFailure``
destination, an SQS queue, if the function's execution role may ``sqs:SendMessage`` to it
(evaluated as IAM would); otherwise it is dropped with a warning, as Lambda drops it (and counts
``DestinationDeliveryFailures``). Not emulated: ``MaximumEventAgeInSeconds``, success
destinations, destinations other than SQS, dead-letter queues (``DeadLetterConfig``).

SNS -> Lambda delivers AWS's event shape (``Records[].Sns`` with the real
TopicArn, subscription ARN, MessageId, Subject, Timestamp and message
attributes), asynchronously like AWS.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from moto.awslambda.models import LambdaFunction
from moto.core.config import default_user_config
from moto.sns.models import Subscription

from ._common import log, wrap

DEFAULT_GRACE_SECONDS = 300
FUNCTION_ERROR = "Unhandled"  # what AWS reports for errors a runtime posts


def route_for(function: Any) -> dict[str, Any] | None:
    routes = (default_user_config.get("lambda") or {}).get("forward") or {}
    return routes.get(function.function_arn) or routes.get(function.function_name)


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


# Functions that have answered once: their process is up, no more start-up grace.
_warm: set[str] = set()


def _post(function: Any, route: dict[str, Any], payload: bytes) -> tuple[bytes, bool]:
    name = route.get("name") or function.function_name
    url = f"{route['url'].rstrip('/')}/2015-03-31/functions/{name}/invocations"
    cold = function.function_arn not in _warm
    grace = float(route.get("grace_seconds", DEFAULT_GRACE_SECONDS)) if cold else 0.0
    timeout = float(function.timeout or 3) + grace
    request = urllib.request.Request(url, data=payload, method="POST", headers={"Content-Type": "application/json"})
    timed_out = _error("Sandbox.Timedout", f"{function.function_name} did not answer within {timeout:.0f} s ({url})")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        _warm.add(function.function_arn)
        return body, False
    except urllib.error.HTTPError as error:
        _warm.add(function.function_arn)
        body = error.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if error.code == 500 and isinstance(parsed, dict) and "errorType" in parsed:
            return body, True
        return _error("Runtime.Unavailable", f"{url} answered HTTP {error.code}: {body[:500]!r}"), True
    except TimeoutError:
        return timed_out, True
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            return timed_out, True
        return _error("Runtime.Unavailable", f"cargo lambda watch at {url} cannot be reached: {reason}"), True


_EXITED = ("ERROR command exited", "ERROR command ended by exception")


def _exit_in_log(path: str, offset: int) -> str | None:
    """The function's build or start-up failure, if cargo lambda watch logged one after ``offset``."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if any(marker in line for marker in _EXITED):
            return "\n".join(lines[max(0, index - 25) : index + 1])
    return None


def call(function: Any, route: dict[str, Any], payload: bytes) -> tuple[bytes, bool]:
    """(payload, is function error) of one invocation through cargo lambda watch.

    With a ``log`` in the route (cargo lambda watch's output), a function that fails to build
    or exits while the invocation waits ends it at once as ``Runtime.ExitError`` (what Lambda
    reports when the runtime process exits), with the log's last lines as the message.
    """
    log_path = route.get("log")
    try:
        offset = os.path.getsize(log_path) if log_path else None
    except OSError:
        offset = None
    result: dict[str, tuple[bytes, bool]] = {}
    worker = threading.Thread(target=lambda: result.setdefault("value", _post(function, route, payload)),
                              name=f"lambda-{function.function_name}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.5)
        if worker.is_alive() and offset is not None:
            failure = _exit_in_log(log_path, offset)
            if failure is not None:
                return _error("Runtime.ExitError", f"{function.function_name} exited before answering:\n{failure}"), True
    return result["value"]


def _header(headers: Any, name: str, default: str) -> str:
    if not headers:
        return default
    for key, value in dict(headers).items():
        if key.lower() == name:
            return value
    return default


def _as_bytes(body: Any) -> bytes:
    if body is None or body == "":
        return b"{}"
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


DEFAULT_RETRY_DELAYS = (1.0, 2.0)  # AWS waits 60 s, then 120 s


def _event_invoke_config(function: Any) -> dict[str, Any]:
    """The function's asynchronous invocation settings (moto appends on every Put; the last wins,
    as AWS's Put replaces)."""
    configs = getattr(function, "event_invoke_config", None) or []
    return dict(configs[-1].config) if configs else {}


def failure_record(function: Any, request_id: str, payload: bytes, result: bytes, attempts: int) -> dict[str, Any]:
    """The invocation record Lambda sends to an on-failure destination (Lambda developer guide,
    "Capturing records of Lambda asynchronous invocations")."""
    def parsed(data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            return data.decode(errors="replace")

    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "requestContext": {"requestId": request_id, "functionArn": f"{function.function_arn}:$LATEST",
                           "condition": "RetriesExhausted", "approximateInvokeCount": attempts},
        "requestPayload": parsed(payload),
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": FUNCTION_ERROR},
        "responsePayload": parsed(result),
    }


def _send_failure_record(function: Any, destination: str, record: dict[str, Any]) -> None:
    from moto.sqs.models import sqs_backends

    from . import iam_evaluation

    parts = destination.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        log.warning("lambda: on-failure destination %s of %s is not an SQS queue; not emulated",
                    destination, function.function_name)
        return
    if not iam_evaluation.role_allows(function.role, "sqs:SendMessage", destination, "lambda.amazonaws.com"):
        log.warning("lambda: the role of %s may not sqs:SendMessage to %s; the failure record is dropped",
                    function.function_name, destination)
        return
    try:
        sqs_backends[parts[4]][parts[3]].send_message(parts[5], json.dumps(record))
        log.info("lambda: failure record of %s sent to %s", function.function_name, destination)
    except Exception:
        log.exception("lambda: failure record of %s not delivered to %s", function.function_name, destination)


def invoke_async(function: Any, payload: bytes) -> None:
    """Run one asynchronous invocation (SNS, EventBridge, InvocationType=Event), with Lambda's
    retries and on-failure destination."""
    route = route_for(function)

    def run() -> None:
        if route is None:
            function.invoke(payload.decode(), {"x-amz-invocation-type": "Event"}, {})
            return
        config = _event_invoke_config(function)
        retries = int(config.get("MaximumRetryAttempts", 2))
        delays = (default_user_config.get("lambda") or {}).get("async_retry_delays") or DEFAULT_RETRY_DELAYS
        request_id = str(uuid.uuid4())
        for attempt in range(1, retries + 2):
            result, errored = call(function, route, payload)
            if not errored:
                return
            log.warning("lambda: async invocation %d of %s failed: %s", attempt, function.function_name, result[:1000])
            if attempt <= retries:
                time.sleep(float(delays[min(attempt, len(delays)) - 1]))
        destination = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if destination:
            _send_failure_record(function, destination, failure_record(function, request_id, payload, result,
                                                                       retries + 1))

    def guarded() -> None:
        try:
            run()
        except Exception:  # AWS never reports an async failure to the caller
            log.exception("lambda: async invocation of %s failed", function.function_name)

    threading.Thread(target=guarded, name=f"lambda-async-{function.function_name}", daemon=True).start()


def _sns_event(subscription: Any, message: str, message_id: str, subject: str | None,
               attributes: dict[str, Any] | None) -> dict[str, Any]:
    region = subscription.topic.sns_backend.region_name
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription.arn,
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": subscription.topic.arn,
                    "Subject": subject,
                    "Message": message,
                    "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
                    "SignatureVersion": "1",
                    "Signature": "EMULATOR",
                    "SigningCertUrl": f"https://sns.{region}.amazonaws.com/SimpleNotificationService-emulator.pem",
                    "UnsubscribeUrl": f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={subscription.arn}",
                    "MessageAttributes": {
                        key: {"Type": value.get("Type"), "Value": value.get("Value")}
                        for key, value in (attributes or {}).items()
                    },
                },
            }
        ]
    }


def _function_for_endpoint(account_id: str, endpoint: str) -> Any | None:
    from moto.awslambda.utils import get_backend

    parts = endpoint.split(":")
    if len(parts) < 7 or parts[5] != "function":
        return None
    qualifier = parts[7] if len(parts) == 8 else None
    try:
        return get_backend(parts[4] or account_id, parts[3]).get_function(parts[6], qualifier)
    except Exception:
        return None


def apply() -> None:
    @wrap(LambdaFunction, "invoke")
    def invoke(original, self, body, request_headers, response_headers):  # type: ignore[no-untyped-def]
        route = route_for(self)
        if route is None:
            return original(self, body, request_headers, response_headers)
        invocation_type = _header(request_headers, "x-amz-invocation-type", "RequestResponse")
        response_headers["x-amz-executed-version"] = "$LATEST"
        if invocation_type == "DryRun":
            return b""
        payload = _as_bytes(body)
        if invocation_type == "Event":
            invoke_async(self, payload)
            return b""
        from . import faults

        if faults.current.run_twice:
            faults.current.run_twice = False
            call(self, route, payload)
        result, errored = call(self, route, payload)
        if errored:
            response_headers["x-amz-function-error"] = FUNCTION_ERROR
        return result

    @wrap(Subscription, "publish")
    def publish(original, self, message, message_id, subject=None, message_attributes=None,  # type: ignore[no-untyped-def]
                group_id=None, deduplication_id=None, message_structure=None):
        if self.protocol != "lambda":
            return original(self, message, message_id, subject=subject, message_attributes=message_attributes,
                            group_id=group_id, deduplication_id=deduplication_id,
                            message_structure=message_structure)
        if self._filter_policy_matcher is not None and not self._filter_policy_matcher.matches(message_attributes, message):
            return None
        if message_structure == "json":
            message = self._parse_message_structure(message, self.protocol)
        function = _function_for_endpoint(self.account_id, self.endpoint)
        if function is None:  # AWS drops it (and counts a delivery failure)
            log.warning("sns: %s has no Lambda function %s", self.arn, self.endpoint)
            return None
        event = _sns_event(self, message, message_id or str(uuid.uuid4()), subject, message_attributes)
        from . import faults

        for _ in range(2 if faults.take("sns:Publish", {"duplicate-delivery"}) else 1):
            invoke_async(function, json.dumps(event).encode())
        return None
