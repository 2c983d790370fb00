"""The necessity table (iam/necessity.py) on evidence made here: a statement a recorded request
needs is proven necessary, one no request needs is unexplained and fails the check, and a
resource policy's statement counts like a role's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "iam"))
import necessity  # noqa: E402

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/stack-TargetGroupFunctionRole"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:stack-ConnectionTopic"
GROUP = f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}:targetgroup/tidbpl-db/abc"


def record(action: str, resource: str, **extra: object) -> dict[str, object]:
    return {"principal": ROLE, "caller": f"arn:aws:sts::{ACCOUNT}:assumed-role/stack-TargetGroupFunctionRole/fn",
            "operation": action, "action": action, "resource": resource, "account": ACCOUNT,
            "context": {"aws:ResourceTag/tidb-privatelink:managed-by": "stack"}, "decision": "Allowed", **extra}


def evidence(tmp_path: Path, statements: list[dict[str, object]], records: list[dict[str, object]]) -> Path:
    folder = tmp_path / "stack"
    folder.mkdir()
    topic_policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "PrivateLinkPublishesNotifications", "Effect": "Allow", "Principal": {"Service": "vpce.amazonaws.com"},
         "Action": "sns:Publish", "Resource": TOPIC}]}
    policies = {"stack_name": "stack", "roles": {"TargetGroupFunctionRole": {"arn": ROLE, "policies": [
        {"name": "Policy0", "policy": {"Version": "2012-10-17", "Statement": statements}}]}},
        "resource_policies": {"ConnectionTopic": {"arn": TOPIC, "policy": topic_policy}}}
    (folder / "policies.json").write_text(json.dumps(policies))
    (folder / "authorizations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


def test_needed_statements_are_proven_and_unused_ones_fail(tmp_path, capsys):
    statements = [
        {"Sid": "ConfigureOwnTargetGroup", "Effect": "Allow",
         "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
         "Resource": f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}:targetgroup/tidbpl-*/*",
         "Condition": {"StringEquals": {"aws:ResourceTag/tidb-privatelink:managed-by": "stack"}}},
        {"Sid": "NeverCalled", "Effect": "Allow", "Action": "elasticloadbalancing:DeleteTargetGroup", "Resource": "*"},
        {"Sid": "CreateElbServiceLinkedRole", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
         "Resource": "*"},
    ]
    publish = {**record("sns:Publish", TOPIC), "principal": "vpce.amazonaws.com", "caller": "vpce.amazonaws.com",
               "context": {}, "resourcePolicy": None}
    folder = evidence(tmp_path, statements, [record("elasticloadbalancing:RegisterTargets", GROUP), publish])
    # The recorded publish carried the topic policy it was evaluated with.
    lines = (folder / "stack/authorizations.jsonl").read_text().splitlines()
    topic_policy = json.loads((folder / "stack/policies.json").read_text())["resource_policies"]["ConnectionTopic"]["policy"]
    lines[1] = json.dumps({**json.loads(lines[1]), "resourcePolicy": topic_policy})
    (folder / "stack/authorizations.jsonl").write_text("\n".join(lines) + "\n")

    assert necessity.main(["necessity", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "proven necessary       TargetGroupFunctionRole Policy0 ConfigureOwnTargetGroup" in out
    assert "unexplained            TargetGroupFunctionRole Policy0 NeverCalled" in out
    assert "exercised only in AWS  TargetGroupFunctionRole Policy0 CreateElbServiceLinkedRole" in out
    assert "proven necessary       ConnectionTopic (resource policy) PrivateLinkPublishesNotifications" in out
    assert "4 statements: 2 proven necessary, 1 exercised only in AWS, 1 unexplained" in out
    assert ("note: TargetGroupFunctionRole Policy0 ConfigureOwnTargetGroup: no recorded request needs Action "
            "elasticloadbalancing:DeregisterTargets") in out


def test_a_statement_whose_condition_no_request_met_is_not_proven(tmp_path, capsys):
    """Narrowed to another stack's tag, the statement no longer allowed the recorded request: the
    replay says so instead of counting it."""
    other = [{"Sid": "ConfigureOwnTargetGroup", "Effect": "Allow", "Action": "elasticloadbalancing:RegisterTargets",
              "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceTag/tidb-privatelink:managed-by": "other"}}}]
    folder = evidence(tmp_path, other, [record("elasticloadbalancing:RegisterTargets", GROUP)])
    assert necessity.main(["necessity", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "replay disagrees with the live decision" in out
    assert "unexplained            TargetGroupFunctionRole Policy0 ConfigureOwnTargetGroup" in out


def test_a_multivalued_key_under_a_plain_operator_fails_the_audit(tmp_path, capsys):
    listener = {"Sid": "CreateTcpListener", "Effect": "Allow", "Action": "elasticloadbalancing:CreateListener",
                "Resource": "*", "Condition": {"StringEquals": {"elasticloadbalancing:ListenerProtocol": "TCP"}}}
    folder = evidence(tmp_path, [listener], [])
    assert necessity.main(["necessity", str(folder)]) == 1
    out = capsys.readouterr().out
    assert ("condition key tested with an operator of the wrong kind: TargetGroupFunctionRole Policy0 "
            "CreateTcpListener: StringEquals on elasticloadbalancing:ListenerProtocol (ArrayOfString)") in out
