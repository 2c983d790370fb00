"""A wave: many instances opted in at once (as Tag Editor, Terraform or a script does), each
execution followed to its end, then all opted out at once; under the emulator's API throttling
when asked. Shared by tests/e2e/test_wave.py (a small wave, in CI) and scripts/bench (N=100).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests/emulator"))
import control  # noqa: E402  (the emulator's control routes)
from local_stack import scenario  # noqa: E402

Aws = Callable[[str], Any]
THROTTLING = "/_emulator/throttling"


@dataclass
class Wave:
    """What one wave did: every execution described, the emulator's call counts, and timings."""

    executions: dict[str, dict[str, Any]]  # identifier -> its execution, described
    seconds_to_last: float
    counts: dict[str, Any] = field(default_factory=dict)  # GET /_emulator/throttling at the end

    @property
    def failed(self) -> list[str]:
        return sorted(i for i, e in self.executions.items() if e["status"] != "SUCCEEDED")

    def failures(self) -> str:
        """The failed executions by error name, with the cause of the first of each."""
        errors: dict[str, list[str]] = {}
        for identifier in self.failed:
            execution = self.executions[identifier]
            errors.setdefault(execution.get("error") or execution["status"], []).append(execution.get("cause") or "")
        return "; ".join(f"{error} x{len(causes)} ({causes[0][:200]})" for error, causes in sorted(errors.items()))

    def throttled(self) -> int:
        return sum(self.counts.get("throttled", {}).values())

    def product_calls(self) -> int:
        """The stack's AWS calls, its state machines' Lambda invocations not counted."""
        return sum(n for action, n in self.counts.get("product_calls", {}).items() if action != "lambda:Invoke")


def throttle(endpoint: str, buckets: dict[str, list[float]] | None) -> None:
    """Throttling on with AWS's figures (and these overrides), counts cleared; None: off."""
    status, answer = control.route(endpoint, THROTTLING, "POST", {"enabled": buckets is not None,
                                                                  "buckets": buckets or {}})
    if status != 200:
        raise RuntimeError(f"{THROTTLING}: {status} {answer}")


def counts(endpoint: str) -> dict[str, Any]:
    return control.route(endpoint, THROTTLING)[1]


def _identifier(execution_input: dict[str, Any]) -> str | None:
    direct = execution_input.get("db_instance_identifier")
    name = execution_input.get("detail", {}).get("requestParameters", {}).get("resourceName", "")
    return direct or (name.rsplit(":db:", 1)[1] if ":db:" in name else None)


def run(aws: Aws, endpoint: str, state_machine: str, identifiers: list[str], act: Callable[[str], None],
        timeout: float = 3600, poll: float = 2.0) -> Wave:
    """``act`` on every instance at once (opt in, opt out), then waits for one new execution of
    ``state_machine`` per instance to end."""
    sfn = aws("stepfunctions")
    known = {e["executionArn"] for e in scenario.executions(aws, state_machine)}
    started = time.time()
    for identifier in identifiers:
        patiently(act, identifier)
    pending: dict[str, str] = {}  # execution ARN -> identifier
    done: dict[str, dict[str, Any]] = {}
    deadline = started + timeout
    while len(done) < len(identifiers):
        if time.time() > deadline:
            raise TimeoutError(f"{len(done)} of {len(identifiers)} executions ended within {timeout:.0f} s")
        for execution in scenario.executions(aws, state_machine):
            arn = execution["executionArn"]
            if arn in known or arn in pending:
                continue
            identifier = _identifier(scenario.execution_input(aws, arn))
            if identifier in identifiers:
                pending[arn] = identifier
        for arn, identifier in list(pending.items()):
            if identifier in done:
                continue
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                done[identifier] = described
        time.sleep(poll)
    last = max(e["stopDate"].timestamp() for e in done.values())
    return Wave(done, last - started, counts(endpoint))


def patiently(act: Callable[[str], None], identifier: str, attempts: int = 10) -> None:
    """``act``, retried while throttled as a script or Terraform retries (its calls share the
    account's buckets with the stack's), with exponential backoff and full jitter."""
    from botocore.exceptions import ClientError

    for attempt in range(attempts):
        try:
            return act(identifier)
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("ThrottlingException", "Throttling") or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0, min(2 ** attempt, 10)))


def history(aws: Aws, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token = None
    while True:
        page = aws("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000,
                                                          **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def retried_errors(events: list[dict[str, Any]]) -> Counter[str]:
    """Errors of the task attempts that failed in an execution (Retry ran them again or Catch
    took them), by error name."""
    found: Counter[str] = Counter()
    for event in events:
        details = event.get("lambdaFunctionFailedEventDetails") or event.get("taskFailedEventDetails")
        if details:
            found[details.get("error", "")] += 1
    return found


def owned(aws: Aws, stack_name: str) -> Counter[tuple[str, str]]:
    """What the stack owns, by (kind, instance): target groups, load balancers, endpoint services
    and security groups tagged managed-by=<stack>, and turn leases."""
    found: Counter[tuple[str, str]] = Counter()
    elbv2, ec2 = aws("elbv2"), aws("ec2")

    def tagged(tags: Any) -> str | None:
        tags = {t["Key"]: t["Value"] for t in tags}
        return tags.get("tidb-privatelink:db-instance") if tags.get("tidb-privatelink:managed-by") == stack_name else None

    for kind, pages, key in (("target_group", elbv2.get_paginator("describe_target_groups").paginate(), "TargetGroups"),
                             ("load_balancer", elbv2.get_paginator("describe_load_balancers").paginate(),
                              "LoadBalancers")):
        arns = [item[f"{'TargetGroup' if kind == 'target_group' else 'LoadBalancer'}Arn"] for page in pages
                for item in page[key]]
        for chunk in range(0, len(arns), 20):
            for description in elbv2.describe_tags(ResourceArns=arns[chunk:chunk + 20])["TagDescriptions"]:
                if (identifier := tagged(description["Tags"])) is not None:
                    found[(kind, identifier)] += 1
    for service in ec2.describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]:
        if (identifier := tagged(service.get("Tags", []))) is not None:
            found[("endpoint_service", identifier)] += 1
    mine = [{"Name": "tag:tidb-privatelink:managed-by", "Values": [stack_name]}]
    for group in ec2.describe_security_groups(Filters=mine)["SecurityGroups"]:
        if (identifier := tagged(group.get("Tags", []))) is not None:
            found[("security_group", identifier)] += 1
    dynamodb = aws("dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        if table.startswith(f"{stack_name}-"):
            for item in dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]:
                found[("turn_lease", item["db_instance_identifier"]["S"])] += 1
    return found


def create_databases(aws: Aws, network: scenario.Network, prefix: str, n: int) -> dict[str, str]:
    """``n`` MySQL instances in ``network``: identifier -> ARN."""
    return {f"{prefix}-{i:03d}": scenario.create_database(aws, network, f"{prefix}-{i:03d}")["DBInstanceArn"]
            for i in range(n)}


def untag(aws: Aws, db_arn: str) -> None:
    aws("rds").remove_tags_from_resource(ResourceName=db_arn, TagKeys=[scenario.OPT_IN_TAG])


def at_once(aws: Aws, state: dict[str, Any], dbs: dict[str, str], workflow: str, value: str = "true",
            poll: float = 2.0) -> Wave:
    """All of ``dbs`` (identifier -> ARN) opted in with the tag value ``value`` (``provision``), or
    all opted out (``deprovision``), at once on the local stack ``state``: run()'s wave."""
    provision = workflow == "provision"
    act = (lambda i: scenario.opt_in(aws, dbs[i], value)) if provision else (lambda i: untag(aws, dbs[i]))
    machine = state["state_machines"]["ProvisionStateMachine" if provision else "DeprovisionStateMachine"]
    return run(aws, state["endpoint"], machine, sorted(dbs), act, poll=poll)


def summary(wave: Wave) -> str:
    return json.dumps({"executions": len(wave.executions), "failed": wave.failed,
                       "seconds_to_last": round(wave.seconds_to_last, 1), "throttled": wave.throttled(),
                       "product_calls": wave.product_calls()})
