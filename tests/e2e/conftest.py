"""The whole application, started the way a developer starts it (scripts/local-stack up), on free
ports and in a state directory of its own, so it never meets a stack the developer has running.
The stack is taken down at the end of the session (and, should pytest die, by the stack's own
reaper, which watches this process).

A second stack (``tidb_cloud``) runs with a TiDB Cloud API key against the TiDB Cloud double
(tests/tidb_cloud_double), for tests/e2e/test_tidb_cloud.py; it is only started when a test asks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from local_stack import scenario  # noqa: E402
from local_stack.stack import control  # noqa: E402  (tests/emulator/control.py)
from local_stack.processes import free_port, listening  # noqa: E402

STACK_NAME = "tidb-privatelink-e2e"
TIDB_CLOUD_STACK_NAME = "tidb-privatelink-e2e-api"
TIDB_CLOUD_CLUSTER = "1379661944646413143"  # a cluster the double knows (its default)

Aws = Callable[[str], Any]


@contextlib.contextmanager
def _local_stack(tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str) -> Iterator[dict[str, Any]]:
    state_dir = tmp_path_factory.mktemp("local-stack")
    command = [str(ROOT / "scripts/local-stack")]
    # A developer's shell may carry a local stack's exports (TIDB_CLOUD_ACCOUNT_ID, ...): the
    # stacks under test get only what is given here.
    env = {k: v for k, v in os.environ.items() if k not in ("TIDB_CLOUD_ACCOUNT_ID", "TIDB_CLOUD_AZ_IDS")}
    up = subprocess.run(
        [*command, "up", "--state-dir", str(state_dir), "--port", "0", "--dns-port", "0", "--stack-name", name,
         "--no-reload", "--owner-pid", str(os.getpid()), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    if up.returncode != 0:
        pytest.fail(f"scripts/local-stack up failed:\n{up.stdout}")
    state = json.loads((state_dir / "state.json").read_text())
    state["state_dir"] = str(state_dir)
    found: list[str] = []
    try:
        yield state
        found = control.problems(state["endpoint"])
    finally:
        _keep_authorizations(state_dir, name)
        down = subprocess.run([*command, "down", "--state-dir", str(state_dir)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ports = [state["port"], state["dns_port"], *[f["port"] for f in state["functions"]]]
        assert down.returncode == 0, down.stdout
        assert not [p for p in ports if listening(p)], f"still listening after down: {down.stdout}"
    assert not found, "the emulator met problems:\n" + "\n".join(found)


# Where each stack's evaluated IAM authorizations and deployed policies are kept after the run,
# for the necessity table (tests/emulator/iam/necessity.py).
EVIDENCE = ROOT / "target/iam-evidence"


def _keep_authorizations(state_dir: Path, name: str) -> None:
    target = EVIDENCE / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for source in (state_dir / "logs/authorizations.jsonl", state_dir / "policies.json"):
        if source.exists():
            shutil.copy(source, target / source.name)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with _local_stack(tmp_path_factory, STACK_NAME) as state:
        yield state


@pytest.fixture(scope="session")
def aws(stack: dict[str, Any]) -> Callable[[str], Any]:
    return scenario.clients(stack)


@pytest.fixture(scope="session")
def network(aws: Callable[[str], Any]) -> scenario.Network:
    return scenario.create_network(aws, "orders")


# --- driving a stack and reading back what it owns -------------------------------------------------


RESOURCE_KINDS = ("target_groups", "load_balancers", "listeners", "security_groups", "db_sg_rules",
                  "endpoint_services", "turn_leases")


class Inventory(dict):
    """Everything of one stack for one instance, by kind (lists of AWS descriptions)."""

    def counts(self) -> dict[str, int]:
        return {kind: len(self[kind]) for kind in RESOURCE_KINDS}

    def total(self) -> int:
        return sum(len(self[kind]) for kind in RESOURCE_KINDS)

    def empty(self) -> bool:
        return self.total() == 0

    def summary(self) -> str:
        return f"{self.total()} resources {self.counts()}"


class Driver:
    """One local stack, as its administrator sees it: its workflows' executions and what it owns."""

    def __init__(self, stack: dict[str, Any], aws: Aws):
        self.stack, self.aws = stack, aws
        self.name = stack["stack_name"]

    # -- workflows ----------------------------------------------------------------------------

    def machine(self, workflow: str) -> str:
        return self.stack["state_machines"]["ProvisionStateMachine" if workflow == "provision"
                                            else "DeprovisionStateMachine"]

    def known(self, workflow: str) -> set[str]:
        return {e["executionArn"] for e in scenario.executions(self.aws, self.machine(workflow))}

    def new_executions(self, workflow: str, identifier: str, known: set[str], count: int = 1,
                       timeout: float = 30) -> list[str]:
        """ARNs (oldest first) of ``count`` executions not in ``known`` whose input names ``identifier``."""
        deadline = time.time() + timeout
        found: dict[str, Any] = {}
        while True:
            for execution in scenario.executions(self.aws, self.machine(workflow)):
                arn = execution["executionArn"]
                if arn in known or arn in found:
                    continue
                if _names(scenario.execution_input(self.aws, arn), identifier):
                    found[arn] = execution["startDate"]
            if len(found) >= count or time.time() > deadline:
                break
            time.sleep(0.3)
        assert len(found) >= count, (f"{len(found)} of {count} {workflow} executions for {identifier} "
                                     f"started within {timeout:.0f} s")
        return sorted(found, key=lambda arn: (found[arn], arn))

    def start(self, workflow: str, identifier: str) -> str:
        return self.aws("stepfunctions").start_execution(
            stateMachineArn=self.machine(workflow), input=json.dumps({"db_instance_identifier": identifier}),
        )["executionArn"]

    def opt_in_and_follow(self, db_arn: str, identifier: str) -> tuple[str, dict[str, Any]]:
        """Tags the instance and follows the provisioning it starts to its end: (ARN, described)."""
        known = self.known("provision")
        scenario.opt_in(self.aws, db_arn)
        [arn] = self.new_executions("provision", identifier, known)
        return arn, self.run_to_end(arn)

    def run_to_end(self, execution_arn: str, timeout: float = 600) -> dict[str, Any]:
        return scenario.run_to_end(self.aws, execution_arn, timeout)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        token = None
        while True:
            page = self.aws("stepfunctions").get_execution_history(
                executionArn=execution_arn, maxResults=1000, **({"nextToken": token} if token else {}))
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                return events

    def states_entered(self, execution_arn: str) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history(execution_arn)
                if e["type"].endswith("StateEntered")]

    def rollbacks_of(self, provision_arn: str) -> list[dict[str, Any]]:
        """Deprovision executions started by ``provision_arn`` (its rollback), described."""
        sfn = self.aws("stepfunctions")
        out = []
        for execution in scenario.executions(self.aws, self.machine("deprovision")):
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if json.loads(described.get("input") or "{}").get("AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID") == provision_arn:
                out.append(described)
        return out

    # -- what the stack owns --------------------------------------------------------------------

    def inventory(self, identifier: str, db_security_group_id: str | None = None,
                  also_groups: set[str] = frozenset()) -> Inventory:  # type: ignore[assignment]
        """Everything tagged ``managed-by=<stack>`` and ``db-instance=<identifier>``: ELBv2 target
        groups, load balancers and listeners (of those load balancers, or tagged), EC2 security
        groups, security group rules that carry our tags (anywhere) or that admit one of our groups
        into the DB's security group (``also_groups``: group IDs seen earlier, so a rule that
        outlived its group still counts), endpoint services, and the instance's turn lease (an item
        of the stack's turn table, which every way out of a workflow releases). (Not EC2 DescribeTags: moto keeps
        listing the tags of deleted groups and revoked rules there.)"""
        elbv2, ec2 = self.aws("elbv2"), self.aws("ec2")
        groups = [g for page in elbv2.get_paginator("describe_target_groups").paginate() for g in page["TargetGroups"]]
        balancers = [b for page in elbv2.get_paginator("describe_load_balancers").paginate()
                     for b in page["LoadBalancers"]]
        listeners = [(b["LoadBalancerArn"], l) for b in balancers
                     for l in elbv2.describe_listeners(LoadBalancerArn=b["LoadBalancerArn"])["Listeners"]]
        tags = _elb_tags(elbv2, [g["TargetGroupArn"] for g in groups] + [b["LoadBalancerArn"] for b in balancers]
                         + [l["ListenerArn"] for _, l in listeners])
        mine = lambda arn: scenario.managed_by(tags.get(arn, {}), self.name, identifier)  # noqa: E731
        ours = [{"Name": "tag:tidb-privatelink:managed-by", "Values": [self.name]},
                {"Name": "tag:tidb-privatelink:db-instance", "Values": [identifier]}]
        security_groups = ec2.describe_security_groups(Filters=ours)["SecurityGroups"]
        group_ids = {g["GroupId"] for g in security_groups} | set(also_groups)
        # Rules on the DB's group that admit one of our groups, and any rule anywhere with our tags.
        rules = {r["SecurityGroupRuleId"]: r for r in ec2.describe_security_group_rules(Filters=ours)["SecurityGroupRules"]}
        if db_security_group_id:
            for rule in ec2.describe_security_group_rules(
                    Filters=[{"Name": "group-id", "Values": [db_security_group_id]}])["SecurityGroupRules"]:
                if rule.get("ReferencedGroupInfo", {}).get("GroupId") in group_ids:
                    rules[rule["SecurityGroupRuleId"]] = rule
        services = [s for s in ec2.describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]
                    if scenario.managed_by(s.get("Tags", []), self.name, identifier)]
        dynamodb = self.aws("dynamodb")
        leases = [item for table in dynamodb.list_tables()["TableNames"] if table.startswith(f"{self.name}-")
                  for item in [dynamodb.get_item(TableName=table, ConsistentRead=True,
                                                 Key={"db_instance_identifier": {"S": identifier}}).get("Item")] if item]
        return Inventory(
            target_groups=[g for g in groups if mine(g["TargetGroupArn"])],
            load_balancers=[b for b in balancers if mine(b["LoadBalancerArn"])],
            listeners=[l for lb, l in listeners if mine(lb) or mine(l["ListenerArn"])],
            security_groups=security_groups,
            db_sg_rules=list(rules.values()),
            endpoint_services=services,
            turn_leases=leases,
        )

    def instance_tags(self, identifier: str) -> dict[str, str]:
        db = self.aws("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        return {t["Key"]: t["Value"] for t in db.get("TagList", [])}


def _names(value: Any, identifier: str) -> bool:
    """Whether an execution input is about ``identifier`` (a request, a rollback or a CloudTrail event)."""
    if value.get("db_instance_identifier") == identifier:
        return True
    parameters = (value.get("detail") or {}).get("requestParameters") or {}
    return (parameters.get("dBInstanceIdentifier") == identifier
            or str(parameters.get("resourceName", "")).endswith(f":db:{identifier}"))


def _elb_tags(elbv2: Any, arns: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for start in range(0, len(arns), 20):
        for item in elbv2.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            out[item["ResourceArn"]] = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
    return out


@pytest.fixture(scope="session")
def driver(stack: dict[str, Any], aws: Aws) -> Driver:
    return Driver(stack, aws)


# --- the TiDB Cloud double and the stack that uses it ------------------------------------------------

DOUBLE = ROOT / "tests/tidb_cloud_double/double.py"

# The double assumes a role into TiDB Cloud's account with the key "testing", which an emulator
# with IAM enforcement on (as the local stack runs it) refuses. This shim runs the double unchanged
# except that it acts with the keys of the TiDB Cloud stand-in user that `local-stack up` creates
# in that account (state["tidb_cloud"]), as TiDB Cloud would act with its own credentials.
_DOUBLE_SHIM = r"""
import os, sys
double_py = sys.argv[1]
sys.path.insert(0, os.path.dirname(double_py))
import boto3
from botocore.config import Config
import double

def ec2(self):
    if self._ec2 is None:
        self._ec2 = boto3.client(
            "ec2", endpoint_url=self.emulator_url, region_name=self.region,
            aws_access_key_id=os.environ["TIDB_CLOUD_AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=os.environ["TIDB_CLOUD_AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    return self._ec2

double.TiDBCloudAws.ec2 = ec2
double.main(sys.argv[2:])
"""

_REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[0-9.]+" (?P<status>\d{3})')


def request_kind(method: str, target: str) -> str:
    """A TiDB Cloud API request by operation (getAvailabilityZones, list, create, get, delete)."""
    path = target.split("?", 1)[0]
    rest = path.split("/privateLinkConnections", 1)[-1] if "/privateLinkConnections" in path else path
    if rest.startswith(":"):
        return rest[1:]
    if rest == "":
        return {"GET": "list", "POST": "create"}.get(method, f"{method} collection")
    return {"GET": "get", "DELETE": "delete"}.get(method, f"{method} item")


class TiDBCloudDouble:
    """The double as a process of this session, on a fixed port (the stack's TiDBCloudApiUrl)."""

    def __init__(self, port: int, emulator_url: str, aws_user: dict[str, str], log: Path):
        self.port, self.emulator_url, self.aws_user, self.log = port, emulator_url, aws_user, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self, public_key: str, private_key: str) -> None:
        env = {**os.environ, "TIDB_CLOUD_AWS_ACCESS_KEY_ID": self.aws_user["access_key_id"],
               "TIDB_CLOUD_AWS_SECRET_ACCESS_KEY": self.aws_user["secret_access_key"]}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _DOUBLE_SHIM, str(DOUBLE), "--emulator-url", self.emulator_url,
                 "--host", "127.0.0.1", "--port", str(self.port), "--account-id", self.aws_user["account"],
                 "--cluster", TIDB_CLOUD_CLUSTER, "--public-key", public_key, "--private-key", private_key,
                 "--watch-pid", str(os.getpid()), "--log-requests"],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env,
            )
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.process.wait(timeout=10)
            raise RuntimeError(f"the TiDB Cloud double did not start: {self.log.read_text(errors='replace')[-2000:]}")
        ready = json.loads(line)
        assert ready["event"] == "ready" and ready["port"] == self.port, ready

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/_double/state")

    def faults(self, **faults: Any) -> dict[str, Any]:
        return self._call("POST", "/_double/faults", faults)["faults"]

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def requests_since(self, offset: int) -> list[tuple[str, str, int]]:
        """(kind, method, status) of each TiDB Cloud API request logged after ``offset`` (the
        double's own /_double/ control routes excluded)."""
        with open(self.log, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        out = []
        for match in _REQUEST_LINE.finditer(text):
            if match["target"].startswith("/_double/"):
                continue
            out.append((request_kind(match["method"], match["target"]), match["method"], int(match["status"])))
        return out

    @staticmethod
    def describe(requests: list[tuple[str, str, int]]) -> str:
        kinds = Counter(f"{kind} {status}" for kind, _, status in requests)
        return f"{len(requests)} requests: " + ", ".join(f"{n}x {k}" for k, n in sorted(kinds.items()))


@pytest.fixture(scope="session")
def tidb_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A second local stack with a TiDB Cloud API key (and no account/AZ parameters) whose
    TiDBCloudApiUrl is the TiDB Cloud double, started on a free port once the stack is up."""
    keys = {"public_key": "e2e-public-key", "private_key": "e2e-private-" + secrets.token_hex(12)}
    port = free_port()
    with _local_stack(tmp_path_factory, TIDB_CLOUD_STACK_NAME, "--tidb-cloud-api-key", json.dumps(keys),
                      "--parameter", f"TiDBCloudApiUrl=http://127.0.0.1:{port}",
                      "--parameter", f"TiDBCloudClusterId={TIDB_CLOUD_CLUSTER}",
                      # The quietest level: what must not be lost (metrics) is shown not to depend on logs.
                      "--parameter", "LogLevel=error") as state:
        double = TiDBCloudDouble(port, state["endpoint"], state["tidb_cloud"],
                                 Path(state["state_dir"]) / "logs" / "tidb-cloud-double.log")
        double.start(keys["public_key"], keys["private_key"])
        try:
            yield {"stack": state, "double": double, "keys": keys}
        finally:
            double.stop()
            assert not listening(port), "the TiDB Cloud double still listens"


@pytest.fixture(scope="session")
def tidb_aws(tidb_cloud: dict[str, Any]) -> Aws:
    return scenario.clients(tidb_cloud["stack"])


@pytest.fixture(scope="session")
def tidb_driver(tidb_cloud: dict[str, Any], tidb_aws: Aws) -> Driver:
    return Driver(tidb_cloud["stack"], tidb_aws)


@pytest.fixture(scope="session")
def tidb_network(tidb_aws: Aws) -> scenario.Network:
    return scenario.create_network(tidb_aws, "analytics", "10.32")
