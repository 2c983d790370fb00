"""Schedule expressions: PutRule refuses what EventBridge refuses, and the template's backstop
schedule is valid for every SyncIntervalMinutes the template allows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from local_stack import cfn  # noqa: E402

INVALID = ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "rate(1 hours)", "rate(minutes)", "rate(5  minutes)"]
VALID = ["rate(1 minute)", "rate(5 minutes)", "rate(1 hour)", "rate(12 hours)", "rate(1 day)", "rate(60 minutes)"]


@pytest.mark.parametrize("expression", INVALID)
def test_put_rule_refuses_what_eventbridge_refuses(aws: Callable[[str], Any], expression: str) -> None:
    with pytest.raises(ClientError) as error:
        aws("events").put_rule(Name="schedule", ScheduleExpression=expression)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "ScheduleExpression is not valid" in error.value.response["Error"]["Message"]


@pytest.mark.parametrize("expression", VALID)
def test_put_rule_takes_valid_rates(aws: Callable[[str], Any], expression: str) -> None:
    aws("events").put_rule(Name="schedule", ScheduleExpression=expression)


def test_the_backstop_schedule_is_valid_for_every_allowed_interval(aws: Callable[[str], Any]) -> None:
    transformed = subprocess.run(
        [str(ROOT / ".venv-tools/bin/python"), str(ROOT / "scripts/local_stack/transform.py"),
         str(ROOT / "template.yaml"), "us-east-1", "123456789012", "schedules", "{}"],
        capture_output=True, text=True, check=True, env={"SAM_CLI_TELEMETRY": "0", "PATH": "/usr/bin:/bin"},
    )
    template = json.loads(transformed.stdout)["template"]
    rules = {k: r for k, r in template["Resources"].items()
             if r["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in r["Properties"]}
    assert rules, "the template has no scheduled rule"
    spec = template["Parameters"]["SyncIntervalMinutes"]
    events = aws("events")
    for minutes in range(int(spec["MinValue"]), int(spec["MaxValue"]) + 1):
        values = cfn.parameter_values(template, {"SyncIntervalMinutes": str(minutes)})
        resolver = cfn.Resolver(template, values, {"AWS::StackName": "schedules", "AWS::Region": "us-east-1",
                                                    "AWS::AccountId": "123456789012", "AWS::Partition": "aws"},
                                lambda *_: "x")
        for logical_id, rule in rules.items():
            expression = resolver.resolve(rule["Properties"]["ScheduleExpression"])
            try:
                events.put_rule(Name=f"{logical_id}-{minutes}", ScheduleExpression=expression)
            except ClientError as error:
                pytest.fail(f"SyncIntervalMinutes={minutes}: {logical_id} schedule {expression!r}: {error}")
