"""The template's EventBridge rules, as deployed, against the real event shapes in
tests/fixtures/events: each event starts the workflow it should, and only that one."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures/events"
sys.path.insert(0, str(ROOT / "scripts"))
from local_stack import cfn  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture(scope="module")
def patterns() -> dict[str, str]:
    """Rule logical ID -> its event pattern (JSON), resolved with the template's defaults."""
    transformed = subprocess.run(
        [str(ROOT / ".venv-tools/bin/python"), str(ROOT / "scripts/local_stack/transform.py"),
         str(ROOT / "template.yaml"), REGION, ACCOUNT, "rules", "{}"],
        capture_output=True, text=True, check=True, env={"SAM_CLI_TELEMETRY": "0", "PATH": "/usr/bin:/bin"},
    )
    template = json.loads(transformed.stdout)["template"]
    resolver = cfn.Resolver(template, cfn.parameter_values(template, {}),
                            {"AWS::StackName": "rules", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                             "AWS::Partition": "aws"}, lambda *_: "x")
    return {logical_id: json.dumps(resolver.resolve(r["Properties"]["EventPattern"]))
            for logical_id, r in template["Resources"].items()
            if r["Type"] == "AWS::Events::Rule" and "EventPattern" in r["Properties"]}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def tag_value(event: dict[str, Any], value: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["detail"]["requestParameters"]["tags"] = [{"key": "tidb-privatelink", "value": value}]
    return event


def matching(aws: Callable[[str], Any], patterns: dict[str, str], event: dict[str, Any]) -> set[str]:
    """Which workflows (the rules' owners, by logical ID prefix) the event starts."""
    events = aws("events")
    owners = set()
    for logical_id, pattern in patterns.items():
        if events.test_event_pattern(EventPattern=pattern, Event=json.dumps(event))["Result"]:
            owners.add(next(o for o in ("ProvisionStateMachine", "DeprovisionStateMachine", "SyncTargetsFunction",
                                        "AcceptConnectionsFunction") if logical_id.startswith(o)))
    return owners


CREATIONS = ["cloudtrail-create-db-instance", "cloudtrail-restore-db-instance-from-db-snapshot",
             "cloudtrail-restore-db-instance-to-point-in-time", "cloudtrail-create-db-instance-read-replica"]


@pytest.mark.parametrize("name", ["cloudtrail-add-tags", *CREATIONS])
def test_tagging_or_creating_with_the_tag_starts_a_provisioning(aws, patterns, name) -> None:
    assert matching(aws, patterns, fixture(name)) == {"ProvisionStateMachine"}


@pytest.mark.parametrize("name", CREATIONS)
def test_a_creation_without_the_tag_or_that_failed_starts_nothing(aws, patterns, name) -> None:
    untagged = tag_value(fixture(name), "true")
    untagged["detail"]["requestParameters"]["tags"] = [{"key": "team", "value": "data"}]
    assert matching(aws, patterns, untagged) == set()
    failed = fixture(name)
    failed["detail"]["errorCode"] = "DBInstanceAlreadyExists"
    failed["detail"]["responseElements"] = None
    assert matching(aws, patterns, failed) == set()


@pytest.mark.parametrize("value", ["false", "Disabled", "FALSE"])
def test_switching_the_tag_off_starts_a_teardown(aws, patterns, value) -> None:
    # Both start; the instance's current tag decides which one acts (AwaitTurn).
    assert matching(aws, patterns, tag_value(fixture("cloudtrail-add-tags"), value)) == {
        "ProvisionStateMachine", "DeprovisionStateMachine"}


@pytest.mark.parametrize("name", ["cloudtrail-remove-tags", "cloudtrail-delete-db-instance"])
def test_untagging_or_deleting_starts_a_teardown(aws, patterns, name) -> None:
    assert matching(aws, patterns, fixture(name)) == {"DeprovisionStateMachine"}


@pytest.mark.parametrize("name", ["rds-failover", "rds-event-0006-restarted", "rds-event-0013-failover-started",
                                  "rds-event-0015-failover-completed", "rds-event-0021-recovery-completed",
                                  "rds-event-0053-multi-az-recovery-completed"])
def test_events_that_move_the_address_start_a_sync(aws, patterns, name) -> None:
    assert matching(aws, patterns, fixture(name)) == {"SyncTargetsFunction"}


@pytest.mark.parametrize("name", ["cloudtrail-add-tags-cluster", "cloudtrail-create-db-cluster"])
def test_tagging_or_creating_a_cluster_with_the_tag_starts_a_provisioning(aws, patterns, name) -> None:
    assert matching(aws, patterns, fixture(name)) == {"ProvisionStateMachine"}


@pytest.mark.parametrize("event_name", ["RestoreDBClusterFromSnapshot", "RestoreDBClusterToPointInTime"])
def test_a_cluster_restored_or_cloned_with_the_tag_starts_a_provisioning(aws, patterns, event_name) -> None:
    event = fixture("cloudtrail-create-db-cluster")
    event["detail"]["eventName"] = event_name
    assert matching(aws, patterns, event) == {"ProvisionStateMachine"}


def test_untagging_or_deleting_a_cluster_starts_a_teardown(aws, patterns) -> None:
    untagged = fixture("cloudtrail-remove-tags")
    untagged["detail"]["requestParameters"]["resourceName"] = "arn:aws:rds:us-east-1:123456789012:cluster:orders-cluster"
    assert matching(aws, patterns, untagged) == {"DeprovisionStateMachine"}
    assert matching(aws, patterns, tag_value(fixture("cloudtrail-add-tags-cluster"), "false")) == {
        "ProvisionStateMachine", "DeprovisionStateMachine"}
    deleted = fixture("cloudtrail-delete-db-instance")
    deleted["detail"]["eventName"] = "DeleteDBCluster"
    deleted["detail"]["requestParameters"] = {"dBClusterIdentifier": "orders-cluster", "skipFinalSnapshot": True}
    assert matching(aws, patterns, deleted) == {"DeprovisionStateMachine"}


def test_tagging_another_kind_of_rds_resource_starts_nothing(aws, patterns) -> None:
    snapshot = fixture("cloudtrail-add-tags-cluster")
    snapshot["detail"]["requestParameters"]["resourceName"] = "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:s1"
    assert matching(aws, patterns, snapshot) == set()


@pytest.mark.parametrize("name", ["rds-cluster-event-0073-failover-started", "rds-cluster-event-0071-failover-completed"])
def test_cluster_events_that_move_the_writer_start_a_sync(aws, patterns, name) -> None:
    assert matching(aws, patterns, fixture(name)) == {"SyncTargetsFunction"}
    other = fixture(name)
    other["detail"]["EventID"] = "RDS-EVENT-0170"  # cluster created: the writer did not move
    assert matching(aws, patterns, other) == set()
