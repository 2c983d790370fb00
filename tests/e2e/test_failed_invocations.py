"""Asynchronous invocations that fail every attempt are kept: the acceptor and sync-targets,
invoked as SNS and EventBridge invoke them, fail (a statement of their role removed, as an
operator's mistake would), Lambda retries them twice, and the invocation record (the event and
the error) lands in the stack's failed-invocations queue, where the alarm's metric sees it.

    .venv/bin/python -m pytest -q tests/e2e/test_failed_invocations.py
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

Aws = Callable[[str], Any]
ROOT = Path(__file__).resolve().parents[2]


def report(line: str) -> None:
    print(f"E2E: {line}", flush=True)


@pytest.mark.parametrize("logical_id, sid, event", [
    ("AcceptConnectionsFunction", "DescribeEndpointServicesAndConnections", "sns-connection-notification.json"),
    ("SyncTargetsFunction", "DescribeTargetGroups", "events/scheduled-event.json"),
])
def test_an_invocation_failing_every_attempt_is_kept_in_the_failed_invocations_queue(
        stack: dict[str, Any], aws: Aws, logical_id: str, sid: str, event: str) -> None:
    deployed = json.loads((Path(stack["state_dir"]) / "policies.json").read_text())["roles"][f"{logical_id}Role"]
    role = deployed["arn"].split("/")[-1]
    [policy] = [p for p in deployed["policies"] if any(s.get("Sid") == sid for s in p["policy"]["Statement"])]
    variant = {**policy["policy"], "Statement": [s for s in policy["policy"]["Statement"] if s.get("Sid") != sid]}
    function = next(f for f in stack["functions"] if f["logical_id"] == logical_id)
    payload = json.loads((ROOT / "tests/fixtures" / event).read_text())
    queue, sqs, iam = stack["outputs"]["FailedInvocationsQueueUrl"], aws("sqs"), aws("iam")

    def visible() -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    assert visible() == 0
    # The function's own rules (its schedule, RDS events) stay off while its statement is gone:
    # an invocation of theirs in that window would fail too and be a second record.
    events = aws("events")
    rules = events.list_rule_names_by_target(TargetArn=function["arn"])["RuleNames"]
    if logical_id == "SyncTargetsFunction":
        assert rules, "sync-targets has no schedule to hold off"
    for rule in rules:
        events.disable_rule(Name=rule)
    iam.put_role_policy(RoleName=role, PolicyName=policy["name"], PolicyDocument=json.dumps(variant))
    try:
        started = time.monotonic()
        answer = aws("lambda").invoke(FunctionName=function["name"], InvocationType="Event",
                                      Payload=json.dumps(payload).encode())
        assert answer["StatusCode"] == 202, answer
        deadline = time.time() + 90
        while visible() == 0 and time.time() < deadline:
            time.sleep(0.5)
        kept_after = time.monotonic() - started
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=policy["name"], PolicyDocument=json.dumps(policy["policy"]))
        for rule in rules:
            events.enable_rule(Name=rule)

    # What the alarm watches (ApproximateNumberOfMessagesVisible of this queue) sees it.
    assert visible() == 1
    alarm = aws("cloudwatch").describe_alarms(AlarmNames=[f"{stack['stack_name']}-failed-invocations"])["MetricAlarms"][0]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue.rsplit("/", 1)[-1]}], alarm
    run = subprocess.run([str(ROOT / "scripts/status"), "--local", "--json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "LOCAL_STACK_DIR": stack["state_dir"]})
    assert json.loads(run.stdout)["failed_invocations"] == 1, run.stdout[-2000:] + run.stderr[-2000:]
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    record = json.loads(message["Body"])
    report(f"{logical_id}: kept after {kept_after:.1f} s: {json.dumps(record['requestContext'])}, "
           f"{json.dumps(record['responsePayload'])[:300]}")
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"].startswith(function["arn"])
    assert record["requestPayload"] == payload
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "AwsRequestFailed", record["responsePayload"]
    assert "not authorized to perform" in record["responsePayload"]["errorMessage"], record["responsePayload"]
