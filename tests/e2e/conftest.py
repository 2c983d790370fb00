"""The whole application, started the way a developer starts it (scripts/local-stack up), on free
ports and in a state directory of its own, so it never meets a stack the developer has running.
The stack is taken down at the end of the session (and, should pytest die, by the stack's own
reaper, which watches this process).

The main stack (``stack``) runs with --no-tidb-cloud: the tests play TiDB Cloud's AWS account
themselves. A second stack (``tidb_cloud``) is started exactly as `scripts/local-stack up` starts
by default, TiDB Cloud played by the double (tests/tidb_cloud_double), for
tests/e2e/test_tidb_cloud.py; a third (``per_vpc``) likewise, with LoadBalancerSharing=per-vpc,
for tests/e2e/test_sharing.py. Each is only started when a test asks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
from local_stack.stack import control, notifications, ports_of as stack_ports  # noqa: E402  (control: tests/emulator/control.py)
from local_stack.processes import listening  # noqa: E402

STACK_NAME = "tidb-privatelink-e2e"
TIDB_CLOUD_STACK_NAME = "tidb-privatelink-e2e-api"
PER_VPC_STACK_NAME = "tidb-privatelink-e2e-vpc"

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
        ports = stack_ports(state)
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
    # Without a TiDB Cloud API: TiDB Cloud's account and zones as parameters (the tests act as TiDB Cloud).
    with _local_stack(tmp_path_factory, STACK_NAME, "--no-tidb-cloud") as state:
        yield state


@pytest.fixture(scope="session")
def aws(stack: dict[str, Any]) -> Callable[[str], Any]:
    return scenario.clients(stack)


@pytest.fixture(scope="session")
def network(aws: Callable[[str], Any]) -> scenario.Network:
    return scenario.create_network(aws, "orders")


# --- driving a stack and reading back what it owns -------------------------------------------------


class Driver:
    """One local stack, as its administrator sees it: its workflows' executions and what it owns."""

    def __init__(self, stack: dict[str, Any], aws: Aws):
        self.stack, self.aws = stack, aws
        self.name = stack["stack_name"]
        self.notifications: list[dict[str, Any]] = []  # every one read so far, for all tests

    # -- what the stack told its notification topic -------------------------------------------

    def told(self, identifier: str, event: str, timeout: float = 30,
             about: str = "db_instance_identifier") -> list[dict[str, Any]]:
        """Bodies of the stack's notifications of kind ``event`` whose ``about`` field is
        ``identifier``, waiting up to ``timeout`` for a first one (delivery is asynchronous: Step
        Functions -> EventBridge -> the notify function -> SNS -> the local subscriber queue)."""
        deadline = time.time() + timeout
        while True:
            self.notifications += notifications(self.stack)
            found = [n["body"] for n in self.notifications
                     if (n["body"].get(about), n["body"].get("event")) == (identifier, event)]
            if found or time.time() > deadline:
                return found
            time.sleep(0.5)

    def notify_handled(self, execution_arn: str, timeout: float = 30) -> bool:
        """Whether the notify function has decided about ``execution_arn`` (its log names it)."""
        log = Path(self.stack["state_dir"]) / "logs" / f"{self.name}-NotifyFunction.log"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if log.exists() and execution_arn in log.read_text(errors="replace"):
                return True
            time.sleep(0.5)
        return False

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

    def inventory(self, identifier: str | list[str], db_security_group_id: str | None = None,
                  also_groups: set[str] = frozenset()) -> scenario.Inventory:  # type: ignore[assignment]
        return scenario.inventory(self.aws, self.name, identifier, db_security_group_id, also_groups)

    @contextlib.contextmanager
    def schedules_paused(self) -> Iterator[None]:
        """The stack's schedule rules (sync-targets' backstop) disabled for the block, then enabled
        again: a scheduled run reads every target's health, and in the emulator any reader's
        answers use up a new target's `initial` ones (tests/emulator/README.md, fidelity table)."""
        events = self.aws("events")
        rules = [r["Name"] for r in events.list_rules(NamePrefix=self.name)["Rules"]
                 if r.get("ScheduleExpression") and r.get("State") == "ENABLED"]
        assert rules, f"stack {self.name} has no enabled schedule rule"
        for rule in rules:
            events.disable_rule(Name=rule)
        try:
            yield
        finally:
            for rule in rules:
                events.enable_rule(Name=rule)

    def instance_tags(self, identifier: str) -> dict[str, str]:
        db = self.aws("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        return {t["Key"]: t["Value"] for t in db.get("TagList", [])}


def _names(value: Any, identifier: str) -> bool:
    """Whether an execution input is about ``identifier`` (a request, a rollback or a CloudTrail event;
    ``cluster:<id>`` for a DB cluster)."""
    return scenario.instance_of_input(value) == identifier


@pytest.fixture(scope="session")
def driver(stack: dict[str, Any], aws: Aws) -> Driver:
    return Driver(stack, aws)


# --- the TiDB Cloud double and the stack that uses it ------------------------------------------------

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
    """The TiDB Cloud double that `local-stack up` runs as a process of the stack (the stack's
    TiDBCloudApiUrl), through its control routes and its request log."""

    def __init__(self, double: dict[str, Any]):
        self.url, self.log, self.cluster = double["url"], Path(double["log"]), double["cluster"]

    def replace_api_key(self, public_key: str, private_key: str) -> None:
        """The key pair TiDB Cloud accepts from now on (as when a key is rotated in its console)."""
        self._call("POST", "/_double/api-key", {"public_key": public_key, "private_key": private_key})

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


@contextlib.contextmanager
def _double_stack(tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str) -> Iterator[dict[str, Any]]:
    """A local stack as `scripts/local-stack up` starts it by default (TiDB Cloud played by the
    double, its API key in the stack's Secrets Manager), with ``extra`` options."""
    with _local_stack(tmp_path_factory, name, *extra) as state:
        secret = scenario.clients(state)("secretsmanager").get_secret_value(
            SecretId=state["parameters"]["TiDBCloudApiKeySecretArn"])
        yield {"stack": state, "double": TiDBCloudDouble(state["tidb_cloud_double"]),
               "keys": json.loads(secret["SecretString"])}


@pytest.fixture(scope="session")
def tidb_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A second local stack as `scripts/local-stack up` starts it by default: TiDB Cloud played by
    the double, its API key in the stack's Secrets Manager."""
    # The quietest level: what must not be lost (metrics) is shown not to depend on logs.
    with _double_stack(tmp_path_factory, TIDB_CLOUD_STACK_NAME, "--parameter", "LogLevel=error") as found:
        yield found


@pytest.fixture(scope="session")
def per_vpc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A third local stack, the default one with LoadBalancerSharing=per-vpc: the databases of a
    VPC share its load balancer, endpoint service and TiDB Cloud connection. As ``tidb_cloud``'s,
    with the stack's ``aws`` clients and ``driver``."""
    with _double_stack(tmp_path_factory, PER_VPC_STACK_NAME, "--parameter", "LoadBalancerSharing=per-vpc") as found:
        aws = scenario.clients(found["stack"])
        yield {**found, "aws": aws, "driver": Driver(found["stack"], aws)}


@pytest.fixture(scope="session")
def tidb_aws(tidb_cloud: dict[str, Any]) -> Aws:
    return scenario.clients(tidb_cloud["stack"])


@pytest.fixture(scope="session")
def tidb_driver(tidb_cloud: dict[str, Any], tidb_aws: Aws) -> Driver:
    return Driver(tidb_cloud["stack"], tidb_aws)


@pytest.fixture(scope="session")
def tidb_network(tidb_aws: Aws) -> scenario.Network:
    return scenario.create_network(tidb_aws, "analytics", "10.32")
