#!/usr/bin/env python3
"""Which IAM statements of the deployed template some real call needed.

    .venv/bin/python tests/emulator/iam/necessity.py [EVIDENCE_DIR]

EVIDENCE_DIR (default target/iam-evidence) holds one folder per local stack that the end-to-end
suite ran (tests/e2e/conftest.py keeps them): ``policies.json``, every policy the stack deployed
(each role's, the topic's and the key's), and ``authorizations.jsonl``, every authorization the
emulator evaluated during the run (principal, action, resource, context, decision).

For each statement, the recorded requests that were allowed are evaluated again, by the same
evaluator (iam-simulate, tests/emulator/iam/evaluator.js), against the deployed policies with
that one statement removed. A statement is *proven necessary* when some request is then denied.
Statements only AWS itself exercises are listed with the AWS document that requires them
(``AWS_ONLY``). Any other statement is *unexplained*: the check fails, the statement must be
exercised by a test, or justified here, or removed from template.yaml. Also audited: every
condition key a statement tests, against its type in AWS's data (a multivalued key needs
ForAnyValue:/ForAllValues:, a single-valued one must not have them: fails the check); and, as
notes, the actions or resources of a necessary statement's list that no request needed.
Prints the table.
"""

from __future__ import annotations

import copy
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests/emulator"))
from patches.iam_evaluator import Evaluator  # noqa: E402

# Statements (by Sid) that only AWS's own machinery exercises, and the document that requires them.
AWS_ONLY = {
    "CreateElbServiceLinkedRole": "ELB creates its service-linked role on the account's first load balancer or "
                                  "target group, as the caller: docs.aws.amazon.com/elasticloadbalancing/latest/"
                                  "userguide/elb-service-linked-roles.html",
    "DeliverExecutionLogs": "Step Functions delivers execution logs to CloudWatch Logs with these calls: docs.aws."
                            "amazon.com/step-functions/latest/dg/cw-logs.html#cloudwatch-iam-policy",
    "ManagedRuleForSyncExecution": "startExecution.sync runs through a managed EventBridge rule that Step Functions "
                                   "creates with the role: docs.aws.amazon.com/step-functions/latest/dg/"
                                   "stepfunctions-iam.html",
    "AlarmsPublishNotifications": "CloudWatch publishes an alarm's state change to an encrypted topic with the "
                                  "topic's key: docs.aws.amazon.com/sns/latest/dg/sns-key-management.html "
                                  "(compatibility with AWS services)",
    "AccountAdministersKey": "KMS refuses a key policy that does not let the account administer the key (policy "
                             "lockout check): docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html",
}


def load(evidence: Path) -> list[dict[str, Any]]:
    stacks = []
    for folder in sorted(p for p in evidence.iterdir() if p.is_dir()):
        policies = folder / "policies.json"
        records = folder / "authorizations.jsonl"
        if not policies.exists() or not records.exists():
            continue
        lines = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
        stacks.append({"name": folder.name, "policies": json.loads(policies.read_text()), "records": lines})
    return stacks


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document.get("Statement", [])
    return found if isinstance(found, list) else [found]


def statement_id(statement: dict[str, Any], index: int) -> str:
    return statement.get("Sid") or f"#{index}"


def without(document: dict[str, Any], index: int) -> dict[str, Any]:
    out = copy.deepcopy(document)
    out["Statement"] = [s for i, s in enumerate(statements(document)) if i != index]
    return out


def unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        key = json.dumps({k: record.get(k) for k in ("caller", "action", "resource", "account", "context",
                                                        "resourcePolicy", "asAwsBehaves")}, sort_keys=True)
        seen.setdefault(key, record)
    return list(seen.values())


def decide(evaluator: Evaluator, record: dict[str, Any], identity: list[dict[str, Any]], resource_policy: Any) -> str:
    return evaluator.authorize(principal=record["caller"], action=record["action"], resource=record["resource"],
                               account=record["account"], context=record["context"], identity_policies=identity,
                               resource_policy=resource_policy, as_aws_behaves=record.get("asAwsBehaves", False))["decision"]


def analyse(stacks: list[dict[str, Any]], evaluator: Evaluator) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """statement key -> {"needed_by": "action on resource" or None, ...}; and disagreements."""
    table: dict[str, dict[str, Any]] = {}
    disagreements: list[str] = []
    for stack in stacks:
        roles = stack["policies"]["roles"]
        by_arn = {role["arn"]: logical_id for logical_id, role in roles.items()}
        resources = stack["policies"]["resource_policies"]
        by_resource = {entry["arn"]: logical_id for logical_id, entry in resources.items() if entry.get("policy")}
        allowed: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in unique(stack["records"]):
            if record["decision"] == "Allowed":
                allowed[record["principal"]].append(record)

        # The replay must agree with what the emulator decided live; only requests it allows count.
        for principal, records in allowed.items():
            identity = roles[by_arn[principal]]["policies"] if principal in by_arn else None
            if identity is None:
                continue
            agreed = [r for r in records if decide(evaluator, r, identity, r.get("resourcePolicy")) == "Allowed"]
            disagreements += [f"{stack['name']}: {r['action']} on {r['resource']} by {principal}"
                              for r in records if r not in agreed]
            allowed[principal] = agreed

        for logical_id, role in sorted(roles.items()):
            records = allowed.get(role["arn"], [])
            for p, policy in enumerate(role["policies"]):
                if policy.get("managed"):
                    continue
                for index, statement in enumerate(statements(policy["policy"])):
                    key = f"{logical_id} {policy['name']} {statement_id(statement, index)}"
                    entry = table.setdefault(key, {"role": logical_id, "statement": statement, "needed_by": None,
                                                   "records": {}, "policies": role["policies"]})
                    entry["records"].setdefault(logical_id, []).extend(records)
                    if entry["needed_by"]:
                        continue
                    variant = [dict(q, policy=without(q["policy"], index)) if i == p else q
                               for i, q in enumerate(role["policies"])]
                    for record in records:
                        if decide(evaluator, record, variant, record.get("resourcePolicy")) != "Allowed":
                            entry["needed_by"] = f"{record['operation']}: {record['action']} on {record['resource']}"
                            break

        for logical_id, entry_policy in sorted(resources.items()):
            policy = entry_policy.get("policy")
            if not policy:
                continue
            records = [r for principal in allowed for r in allowed[principal]
                       if r.get("resourcePolicy") and by_resource.get(r["resource"]) == logical_id]
            for index, statement in enumerate(statements(policy)):
                key = f"{logical_id} (resource policy) {statement_id(statement, index)}"
                entry = table.setdefault(key, {"role": logical_id, "statement": statement, "needed_by": None})
                if entry["needed_by"]:
                    continue
                for record in records:
                    identity = roles[by_arn[record["principal"]]]["policies"] if record["principal"] in by_arn else []
                    if (decide(evaluator, record, identity, policy) == "Allowed"
                            and decide(evaluator, record, identity, without(policy, index)) != "Allowed"):
                        entry["needed_by"] = f"{record['operation']}: {record['action']} on {record['resource']}"
                        break
    return table, disagreements


SET_OPERATORS = ("ForAnyValue:", "ForAllValues:")


def audit_conditions(table: dict[str, dict[str, Any]], evaluator: Evaluator) -> list[str]:
    """Each condition key a statement tests, against its type in AWS's data: a multivalued key
    (ArrayOf...) needs a set operator, a single-valued one must not have one."""
    findings = []
    for key, entry in sorted(table.items()):
        for operator, tests in (entry["statement"].get("Condition") or {}).items():
            for condition_key in tests:
                kind = evaluator.key_type(condition_key) or "unknown"
                multivalued = kind.startswith("ArrayOf")
                if multivalued != operator.startswith(SET_OPERATORS) and not operator.startswith("Null"):
                    findings.append(f"{key}: {operator} on {condition_key} ({kind})")
    return findings


def unneeded_parts(stacks: list[dict[str, Any]], table: dict[str, dict[str, Any]], evaluator: Evaluator) -> list[str]:
    """Within statements proven necessary, the actions or resources of a list no request needed."""
    notes = []
    for key, entry in sorted(table.items()):
        statement = entry["statement"]
        if not entry["needed_by"] or entry["role"] not in entry.get("records", {}):
            continue
        records = entry["records"][entry["role"]]
        for element in ("Action", "Resource"):
            values = statement.get(element)
            if not isinstance(values, list) or len(values) < 2:
                continue
            for value in values:
                narrowed = {**statement, element: [v for v in values if v != value]}
                variant = [dict(p, policy={**p["policy"], "Statement": [narrowed if s == statement else s
                                                                         for s in statements(p["policy"])]})
                           for p in entry["policies"]]
                if all(decide(evaluator, r, variant, r.get("resourcePolicy")) == "Allowed" for r in records):
                    notes.append(f"{key}: no recorded request needs {element} {value}")
    return notes


def main(argv: list[str]) -> int:
    evidence = Path(argv[1]) if len(argv) > 1 else ROOT / "target/iam-evidence"
    stacks = load(evidence) if evidence.is_dir() else []
    if not stacks:
        print(f"necessity: no evidence in {evidence} (run the end-to-end suite first: pytest tests/e2e)")
        return 2
    evaluator = Evaluator()
    try:
        table, disagreements = analyse(stacks, evaluator)
        conditions = audit_conditions(table, evaluator)
        notes = unneeded_parts(stacks, table, evaluator)
    finally:
        evaluator.close()
    counts = {"proven necessary": 0, "exercised only in AWS": 0, "unexplained": 0}
    print(f"IAM statements of template.yaml as deployed ({', '.join(s['name'] for s in stacks)}); "
          f"{sum(len(s['records']) for s in stacks)} recorded authorizations")
    for key, entry in sorted(table.items()):
        sid = entry["statement"].get("Sid", "")
        if entry["needed_by"]:
            status, why = "proven necessary", entry["needed_by"]
        elif sid in AWS_ONLY:
            status, why = "exercised only in AWS", AWS_ONLY[sid]
        else:
            status, why = "unexplained", f"no recorded request needs it: {json.dumps(entry['statement'])}"
        counts[status] += 1
        print(f"  {status:22} {key}\n  {'':22}   {why}")
    for line in disagreements:
        print(f"  replay disagrees with the live decision: {line}")
    for line in conditions:
        print(f"  condition key tested with an operator of the wrong kind: {line}")
    for line in notes:
        print(f"  note: {line}")
    print(f"{len(table)} statements: {counts['proven necessary']} proven necessary, "
          f"{counts['exercised only in AWS']} exercised only in AWS, {counts['unexplained']} unexplained")
    print(f"condition keys: {len(conditions)} tested with an operator of the wrong kind")
    return 1 if counts["unexplained"] or disagreements or conditions else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
