"""Every fault at every mutating call: a provisioning (or a teardown) with one fault armed at one
of its calls either SUCCEEDS with exactly what a clean run leaves, or FAILS with a named error
and, after its rollback, leaves nothing of ours; a second run from there then succeeds and leaves
exactly one set (or, for a teardown, nothing).

The calls are not listed here: they are read from the emulator's record of one clean run (every
call the stack's roles made, logs/authorizations.jsonl in the stack's state directory) and from
the TiDB Cloud double's request log, so a call the product starts making joins the matrix by
itself. Read-only calls (Describe*, Get*, List*) and the calls that change nothing of what a run
leaves behind (logs, metrics, notifications: ``UNCOUNTED``) are left out.

``FAULT_MATRIX`` says how much of the matrix runs: ``sample`` (the default, what CI runs: each
fault kind at one call, the calls spread over both workflows, and TiDB Cloud's lost answers),
``calls`` (each call meets one fault kind, the kinds taken in turn), ``full`` (every kind at every
call: ``scripts/bench faults``). In ``full``, every cell is run a second time; otherwise a second
run follows only a cell that did not leave a clean run's state. The matrix and its totals are
printed with an ``E2E:`` prefix (``pytest -s`` shows them).

Each test runs in both sharing modes: on the TiDB Cloud stack (``per-database``) and on the
``per_vpc`` stack, where the database is its VPC's only one, so that its runs create and remove
the VPC's shared parts too (counted with its own).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from local_stack import scenario
from local_stack.stack import control

Aws = Callable[[str], Any]

# The emulator's faults (tests/emulator/patches/faults.py), and the double's one for a TiDB Cloud call.
LEVELS = ("sample", "calls", "full")
KINDS = ("applied-then-dropped", "http-503", "throttling", "hang", "http-500")
DOUBLE_KINDS = {"create": "drop_create", "delete": "drop_delete"}
READ_ONLY = ("Describe", "Get", "List")
# Calls that leave nothing behind that a run is judged by (and that the workflows do not wait on).
UNCOUNTED = ("logs:", "cloudwatch:", "sns:", "kms:", "sts:", "xray:")
IDENTIFIER = "matrix-db"
# The matrix judges what the runs leave, not how long they wait: the state machines' Wait states
# (10 to 30 s) last a tenth as long meanwhile (tests/emulator/patches/sfn_waits.py). The load
# balancer's and the target's waits count describes, not seconds, so they end after as many polls;
# those that count seconds (TiDB Cloud's CREATING, an acceptance's pending) take more polls, far
# within each loop's budget.
WAIT_SCALE = 0.1


def report(line: str) -> None:
    print(f"E2E: {line}", flush=True)


def why(execution: dict[str, Any]) -> str:
    return f"{execution['status']}: {execution.get('error')}: {execution.get('cause')}"


def cause(execution: dict[str, Any]) -> str:
    """The error message of a failed execution, short."""
    try:
        text = json.loads(execution.get("cause") or "{}").get("errorMessage") or ""
    except ValueError:
        text = execution.get("cause") or ""
    return text if len(text) <= 160 else text[:157] + "..."


@dataclass
class Cell:
    workflow: str  # provision or deprovision
    role: str  # the stack's role that makes the call (its name without the stack's prefix); "" for TiDB Cloud
    call: str  # service:Action, or tidbcloud:create / tidbcloud:delete
    fault: str
    outcome: str = ""
    leaked: int = 0  # resources beyond a clean run's (provisioning) or left (teardown), after the faulted run
    left: int = 0  # the same after the second run, when one followed
    detail: str = ""

    @property
    def name(self) -> str:
        return f"{self.workflow} {self.role + ' ' if self.role else ''}{self.call}"


class Log:
    """The product's mutating calls recorded from an offset on: the emulator's authorizations
    (one line per authorized call of one of the stack's roles) and the double's requests. Calls
    made with a role that EventBridge assumes (a rule's target) are left out: AWS retries a
    target's failed delivery for up to 24 hours (EventBridge User Guide, "Event retry policy"),
    which the emulator does not emulate."""

    def __init__(self, stack: dict[str, Any], double: Any, aws: Aws):
        self.path, self.double, self.iam = Path(stack["state_dir"]) / "logs/authorizations.jsonl", double, aws("iam")
        self.prefix = f"{stack['stack_name']}-"

    def mark(self) -> tuple[int, int]:
        return self.path.stat().st_size, self.double.log_offset()

    def delivering(self, role: str) -> bool:
        trust = self.iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        return "events.amazonaws.com" in json.dumps(trust)

    def calls_since(self, mark: tuple[int, int]) -> list[tuple[str, str]]:
        """(role, call) in the order first made."""
        with open(self.path, "rb") as log:
            log.seek(mark[0])
            lines = log.read().decode().splitlines()
        calls: list[tuple[str, str]] = []
        for entry in map(json.loads, lines):
            operation, role = entry["operation"], entry["principal"].rsplit("/", 1)[-1]
            if (entry["product"] and not operation.split(":", 1)[1].startswith(READ_ONLY)
                    and not operation.startswith(UNCOUNTED) and (role, operation) not in calls
                    and not self.delivering(role)):
                calls.append((role, operation))
        for kind, _, status in self.double.requests_since(mark[1]):
            if kind in DOUBLE_KINDS and status < 300 and ("", f"tidbcloud:{kind}") not in calls:
                calls.append(("", f"tidbcloud:{kind}"))
        return [(role.removeprefix(self.prefix), call) for role, call in calls]


class Matrix:
    def __init__(self, tidb_cloud: dict[str, Any], aws: Aws, driver: Any, network: scenario.Network,
                 owners: list[str]):
        self.stack, self.double, self.aws, self.driver = tidb_cloud["stack"], tidb_cloud["double"], aws, driver
        self.network, self.owners = network, owners
        self.db = scenario.create_database(aws, network, IDENTIFIER)
        self.groups: set[str] = set()  # every security group of ours seen, so a rule that outlives one counts
        self.theirs = {c["id"] for c in self.double.state()["connections"]}  # other tests' connections

    # -- what a run leaves --------------------------------------------------------------------

    def inventory(self) -> scenario.Inventory:
        found = self.driver.inventory(self.owners, self.network.security_group_id, self.groups)
        self.groups |= {g["GroupId"] for g in found["security_groups"]}
        return found

    def connections(self) -> list[dict[str, Any]]:
        """TiDB Cloud connections of this matrix not on their way out."""
        return [c for c in self.double.state()["connections"]
                if c["id"] not in self.theirs and c["state"] not in ("DELETING",)]

    def counts(self) -> dict[str, int]:
        """What a run leaves in EC2, ELBv2, the endpoint services and TiDB Cloud. Not the turn lease:
        one that a workflow could not give back (ReleaseTurn's Catch) is taken over by the next
        execution once its holder has ended, and expires (TTL)."""
        counts = self.inventory().counts()
        del counts["turn_leases"]
        return {**counts, "tidb_cloud_connections": len(self.connections())}

    # -- runs -----------------------------------------------------------------------------------

    def run(self, workflow: str) -> dict[str, Any]:
        """Starts ``workflow`` as a user does (tag on, tag off) and follows it to its end."""
        [execution] = self.runs(workflow, 1)
        return execution

    def runs(self, workflow: str, executions: int) -> list[dict[str, Any]]:
        """The tag change of ``run``, and the ``executions`` it starts (more than one for a
        duplicated event), each followed to its end."""
        known = self.driver.known(workflow)
        if workflow == "provision":
            scenario.opt_in(self.aws, self.db["DBInstanceArn"])
        else:
            self.aws("rds").remove_tags_from_resource(ResourceName=self.db["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])
        arns = self.driver.new_executions(workflow, IDENTIFIER, known, count=executions)
        return [self.driver.run_to_end(arn, timeout=300) for arn in arns]

    def start(self, workflow: str) -> dict[str, Any]:
        """Runs ``workflow`` again as an operator does (StartExecution with the database), to its end."""
        return self.driver.run_to_end(self.driver.start(workflow, IDENTIFIER), timeout=300)

    # -- faults ---------------------------------------------------------------------------------

    def arm(self, cell: Cell) -> None:
        if cell.call.startswith("tidbcloud:"):
            self.double.faults(**{DOUBLE_KINDS[cell.call.split(":", 1)[1]]: 1})
        else:
            control.faults(self.stack["endpoint"], [{"action": cell.call, "fault": cell.fault,
                                                     "role": f"{self.stack['stack_name']}-{cell.role}"}])

    def disarm(self, cell: Cell) -> int:
        """Disarms the fault; how often it fired."""
        if cell.call.startswith("tidbcloud:"):
            name = DOUBLE_KINDS[cell.call.split(":", 1)[1]]
            left = self.double.faults()[name]
            self.double.faults(**{name: 0})
            return 1 - left
        return sum(self.disarm_all().values())

    def disarm_all(self) -> dict[str, int]:
        """Disarms the emulator's faults; how often each action's fault fired."""
        armed = control.route(self.stack["endpoint"], "/_emulator/faults")[1]["faults"]
        control.faults(self.stack["endpoint"], None)
        return {f["action"]: f["fired"] for f in armed}

    # -- one cell -------------------------------------------------------------------------------

    def cell(self, cell: Cell, clean: dict[str, int], second_runs: bool) -> None:
        """Runs ``cell`` from the state its workflow starts from (nothing before a provisioning,
        one set before a teardown), and records how it ended."""
        nothing = dict.fromkeys(clean, 0)
        want = clean if cell.workflow == "provision" else nothing
        start = nothing if cell.workflow == "provision" else clean
        if self.counts() != start:
            other = "deprovision" if cell.workflow == "provision" else "provision"
            ready = self.run(other)
            assert (ready["status"], self.counts()) == ("SUCCEEDED", start), (
                f"the matrix cannot go on: before {cell.name}, a clean {other} left {self.counts()} ({why(ready)})")
        self.arm(cell)
        try:
            execution = self.run(cell.workflow)
        finally:
            fired = self.disarm(cell)
        after = self.counts()
        if not fired:
            cell.outcome = "not reached"
        elif execution["status"] == "SUCCEEDED":
            cell.outcome = "SUCCEEDED" if after == want else "SUCCEEDED, not a clean run's resources"
        elif execution["status"] == "FAILED" and execution.get("error"):
            cell.outcome = f"FAILED {execution['error']}"
            if cell.workflow == "provision" and after != nothing:
                cell.outcome += ", left resources"
        else:
            cell.outcome = f"{execution['status']} {execution.get('error') or 'without an error name'}"
        # What a failed run leaves is all leaked: a rollback (or a teardown) leaves nothing.
        base = want if execution["status"] == "SUCCEEDED" else nothing
        cell.leaked = sum(max(after[k] - base[k], 0) for k in after)
        second, again = None, after
        if second_runs or after != want:
            second = self.start(cell.workflow)
            again = self.counts()
            if (second["status"], again) != ("SUCCEEDED", want):
                cell.outcome += "; the second run did not converge"
        cell.left = sum(max(again[k] - want[k], 0) for k in again)
        if not self.ok(cell):
            cell.detail = f"{why(execution)}; after: {after}" + (f"; second run {why(second)}: {again}" if second else "")
        elif execution["status"] != "SUCCEEDED":
            cell.detail = cause(execution)

    @staticmethod
    def ok(cell: Cell) -> bool:
        return cell.outcome == "SUCCEEDED" or (cell.outcome.startswith("FAILED ") and not any(
            mark in cell.outcome for mark in (",", ";")))


def cells(calls: dict[str, list[tuple[str, str]]], level: str) -> list[Cell]:
    """Every fault kind at every call (full), one kind per call, the kinds taken in turn (calls),
    or of those the first cell of each kind and TiDB Cloud's (sample); provisioning and teardown
    cells alternate, so that each starts where the one before ended."""
    full = level == "full"
    per_workflow: dict[str, list[Cell]] = {}
    turn = 0
    for workflow, found in calls.items():
        for role, call in found:
            if call.startswith("tidbcloud:"):
                kinds: tuple[str, ...] = ("applied-then-dropped",)
            else:
                kinds = KINDS if full else (KINDS[turn % len(KINDS)],)
                turn += 1
            per_workflow.setdefault(workflow, []).extend(Cell(workflow, role, call, kind) for kind in kinds)
    provision, deprovision = per_workflow.get("provision", []), per_workflow.get("deprovision", [])
    out = [c for pair in zip(provision, deprovision) for c in pair]
    out += provision[len(deprovision):] + deprovision[len(provision):]
    if level == "sample":  # the j-th kind at the cell of that kind nearest j/len(KINDS) of the way along
        pool = [c for c in out if not c.call.startswith("tidbcloud:")]
        picked = [min((c for c in pool if c.fault == kind), key=lambda c: abs(pool.index(c) - j * len(pool) / len(KINDS)))
                  for j, kind in enumerate(KINDS) if any(c.fault == kind for c in pool)]
        out = [c for c in out if c.call.startswith("tidbcloud:") or any(c is p for p in picked)]
    return out


def table(done: list[Cell], ok: Callable[[Cell], bool]) -> str:
    width = max([len(c.name) for c in done] + [4])
    lines = [f"{'call':<{width}}  {'fault':<20}  leaked  left  outcome"]
    for c in done:
        mark = ("  (" + c.detail + ")" if c.detail else "") if ok(c) else "  <-- " + c.detail
        lines.append(f"{c.name:<{width}}  {c.fault:<20}  {c.leaked:>6}  {c.left:>4}  {c.outcome}{mark}")
    outcomes = Counter("converged" if ok(c) else "did not converge" for c in done)
    lines.append(f"totals: {len(done)} cells, {outcomes['converged']} converged ("
                 f"{sum(c.outcome == 'SUCCEEDED' for c in done)} succeeded, "
                 f"{sum(ok(c) and c.outcome.startswith('FAILED') for c in done)} failed with a named error, then "
                 f"converged), {outcomes['did not converge']} did not; resources leaked by the faulted runs "
                 f"{sum(c.leaked for c in done)}, left after the second runs {sum(c.left for c in done)}")
    return "\n".join(lines)


@pytest.fixture(scope="module", params=["per-database", "per-vpc"])
def matrix(request: pytest.FixtureRequest) -> Iterator[Matrix]:
    """The matrix on a stack of the sharing mode, its Wait states shortened meanwhile (``WAIT_SCALE``)."""
    if request.param == "per-database":
        stack, aws, driver = (request.getfixturevalue(name) for name in ("tidb_cloud", "tidb_aws", "tidb_driver"))
        network = request.getfixturevalue("tidb_network")
        owners = [IDENTIFIER]
    else:
        stack = request.getfixturevalue("per_vpc")
        aws, driver = stack["aws"], stack["driver"]
        network = scenario.create_network(aws, "matrix", "10.36")
        owners = [IDENTIFIER, scenario.vpc_key(network.vpc_id)]
    # moto replaces the whole section (and does not show it): the local stack's setting goes with it.
    endpoint, running = stack["stack"]["endpoint"], {"execute_state_machine": True}
    control.route(endpoint, "/moto-api/config", "POST", {"stepfunctions": {**running, "wait_scale": WAIT_SCALE}})
    try:
        yield Matrix(stack, aws, driver, network, owners)
    finally:
        control.route(endpoint, "/moto-api/config", "POST", {"stepfunctions": running})


@pytest.fixture(scope="module")
def clean(matrix: Matrix) -> tuple[dict[str, list[tuple[str, str]]], dict[str, int]]:
    """One clean provisioning and teardown: the mutating calls each made, and what a provisioning leaves."""
    log = Log(matrix.stack, matrix.double, matrix.aws)
    calls: dict[str, list[tuple[str, str]]] = {}
    mark = log.mark()
    clean_run = matrix.run("provision")
    calls["provision"] = log.calls_since(mark)
    leaves = matrix.counts()
    mark = log.mark()
    clean_teardown = matrix.run("deprovision")
    calls["deprovision"] = log.calls_since(mark)
    assert clean_run["status"] == clean_teardown["status"] == "SUCCEEDED", (why(clean_run), why(clean_teardown))
    assert leaves["tidb_cloud_connections"] == 1 and leaves["load_balancers"] == 1, leaves
    assert matrix.counts() == dict.fromkeys(leaves, 0), matrix.counts()
    assert ("", "tidbcloud:create") in calls["provision"] and ("", "tidbcloud:delete") in calls["deprovision"], calls
    report(f"fault matrix: calls of a clean run: {json.dumps(calls)}; a clean provisioning leaves {leaves}")
    return calls, leaves


def test_every_fault_at_every_mutating_call_converges_and_leaves_nothing_behind(matrix: Matrix, clean: Any) -> None:
    calls, leaves = clean
    level = os.environ.get("FAULT_MATRIX", "sample")
    assert level in LEVELS, f"FAULT_MATRIX={level!r}: want one of {LEVELS}"
    done: list[Cell] = []
    only = os.environ.get("FAULT_MATRIX_CALLS", "")
    for cell in cells(calls, level):
        if only and not any(part in cell.name for part in only.split(",")):
            continue
        matrix.cell(cell, leaves, second_runs=level == "full")
        done.append(cell)
        report(f"fault matrix cell: {cell.name} {cell.fault}: {cell.outcome}, leaked {cell.leaked}")
    report(f"fault matrix ({level}):\n" + table(done, matrix.ok))
    assert all(matrix.ok(c) for c in done), table([c for c in done if not matrix.ok(c)], matrix.ok)


# Calls whose retry, after a lost answer, meets AWS's answer that the work is done already (the
# group of that name exists; the rule, the listener, the notifications are gone): the workflow goes
# on rather than failing.
WORK_DONE = ("provision SecurityGroupsFunctionRole ec2:CreateSecurityGroup",
             "provision SecurityGroupsFunctionRole ec2:AuthorizeSecurityGroupEgress",
             "provision SecurityGroupsFunctionRole ec2:RevokeSecurityGroupEgress",
             "deprovision RemoveSecurityGroupsFunctionRole ec2:RevokeSecurityGroupIngress",
             "deprovision RemoveLoadBalancerFunctionRole elasticloadbalancing:DeleteListener",
             "deprovision RemoveEndpointServiceFunctionRole ec2:DeleteVpcEndpointConnectionNotifications")


@pytest.mark.parametrize("name", WORK_DONE)
def test_a_lost_answer_whose_retry_finds_the_work_done_is_no_failure(matrix: Matrix, clean: Any, name: str) -> None:
    calls, leaves = clean
    workflow, role, call = name.split(" ")
    assert (role, call) in calls[workflow], calls
    cell = Cell(workflow, role, call, "applied-then-dropped")
    matrix.cell(cell, leaves, second_runs=False)
    report(f"fault matrix cell: {cell.name} {cell.fault}: {cell.outcome}, leaked {cell.leaked}")
    assert cell.outcome == "SUCCEEDED", (cell.outcome, cell.detail)


# At-least-once delivery everywhere at once, for a whole run: each event a rule matches reaches its
# targets twice (two executions start for one tag change), each synchronous Invoke (every Task's
# Lambda) runs its function twice, and each SNS message (TiDB Cloud's connection notifications)
# reaches the acceptor twice.
DUPLICATES = [{"action": action, "fault": "duplicate-delivery", "seconds": 300}
              for action in ("events:PutEvents", "lambda:InvokeFunction", "sns:Publish")]


def test_every_delivery_made_twice_duplicates_nothing(matrix: Matrix, clean: Any) -> None:
    _, leaves = clean
    nothing = dict.fromkeys(leaves, 0)
    if matrix.counts() != nothing:
        assert matrix.run("deprovision")["status"] == "SUCCEEDED"
    for workflow, want in (("provision", leaves), ("deprovision", nothing)):
        control.faults(matrix.stack["endpoint"], DUPLICATES)
        try:
            ended = matrix.runs(workflow, 2)
        finally:
            fired = matrix.disarm_all()
        report(f"every delivery twice, {workflow}: executions {[e['status'] for e in ended]}, duplicates {fired}, "
               f"left {matrix.counts()}")
        assert [e["status"] for e in ended] == ["SUCCEEDED", "SUCCEEDED"], [why(e) for e in ended]
        assert fired["events:PutEvents"] >= 1 and fired["lambda:InvokeFunction"] >= 1, fired
        assert matrix.counts() == want, matrix.counts()
