"""The TiDB Cloud side, automated: a second local stack deployed with a TiDB Cloud API key (in the
emulator's Secrets Manager) and no TiDB Cloud account or zone parameters, whose TiDB Cloud is the
double (tests/tidb_cloud_double), which acts as TiDB Cloud's AWS account in the same emulator.

Counts, requests and timings are printed with an ``E2E:`` prefix (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from local_stack import scenario
from local_stack.stack import control

Aws = Callable[[str], Any]
ROOT = Path(__file__).resolve().parents[2]


def report(line: str) -> None:
    print(f"E2E: {line}", flush=True)


def why(execution: dict[str, Any]) -> str:
    return f"{execution['status']}: {execution.get('error')}: {execution.get('cause')}"


def state_output(driver: Any, execution_arn: str, state: str) -> dict[str, Any]:
    """The state's last output in the execution's history."""
    exits = [e["stateExitedEventDetails"] for e in driver.history(execution_arn)
             if e["type"].endswith("StateExited") and e["stateExitedEventDetails"]["name"] == state]
    assert exits, f"{state} never ended in {execution_arn}"
    return json.loads(exits[-1]["output"])


class ConnectionWatch:
    """Polls the endpoint service owner's view of endpoint connections (as the stack's admin) and
    records when each endpoint was first seen in each state."""

    def __init__(self, aws: Aws):
        self.ec2 = aws("ec2")
        self.first_seen: dict[tuple[str, str], float] = {}
        self.created: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connection-watch", daemon=True)

    def __enter__(self) -> "ConnectionWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for c in self.ec2.describe_vpc_endpoint_connections()["VpcEndpointConnections"]:
                    self.first_seen.setdefault((c["VpcEndpointId"], c["VpcEndpointState"]), time.time())
                    self.created.setdefault(c["VpcEndpointId"], c.get("CreationTimestamp"))
            except Exception:  # noqa: BLE001 - a failed poll is just a missed sample
                pass
            self._stop.wait(0.1)


# --- 7. tag -> linked in TiDB Cloud, untag -> unlinked -------------------------------------------------


def test_tagging_links_tidb_cloud_and_untagging_unlinks_it(tidb_cloud: dict[str, Any], tidb_aws: Aws,
                                                         tidb_driver: Any, tidb_network: scenario.Network) -> None:
    stack, double, driver, aws = tidb_cloud["stack"], tidb_cloud["double"], tidb_driver, tidb_aws
    identifier, network = "warehouse-db", tidb_network
    # Only the key (and cluster, API URL): TiDB Cloud's account and zones come from its API.
    assert not stack["parameters"].get("TiDBCloudAccountId") and not stack["parameters"].get("TiDBCloudAzIds")
    assert stack["parameters"]["TiDBCloudApiKeySecretArn"].startswith(
        f"arn:aws:secretsmanager:{stack['region']}:{stack['account']}:secret:tidb-cloud-api-key-")
    tidb_account = double.state()["accountId"]

    db = scenario.create_database(aws, network, identifier)
    offset = double.log_offset()
    known = driver.known("provision")
    with ConnectionWatch(aws) as watch:
        scenario.opt_in(aws, db["DBInstanceArn"])
        [arn] = driver.new_executions("provision", identifier, known)
        execution = driver.run_to_end(arn)
    requests = double.requests_since(offset)
    assert execution["status"] == "SUCCEEDED", why(execution)
    output = json.loads(execution["output"])

    # The workflow went through the TiDB Cloud steps.
    entered = driver.states_entered(arn)
    for state in ("PlanZones", "CreateEndpointService", "ConnectTiDBCloud", "AwaitAcceptance", "WaitForTiDBCloud",
                  "RecordOnDatabase", "Provisioned"):
        assert state in entered, entered
    history = driver.history(arn)
    submitted = [e for e in history if e["type"] == "TaskSubmitted"]
    assert [(e["taskSubmittedEventDetails"]["resourceType"], e["taskSubmittedEventDetails"]["resource"])
            for e in submitted] == [("events", "putEvents.waitForTaskToken")]
    resumed = [e for e in history if e["type"] == "TaskSucceeded" and e["id"] > submitted[0]["id"]
               and e["taskSucceededEventDetails"]["resourceType"] == "events"]
    assert resumed, "AwaitAcceptance was never resumed by the acceptor (SendTaskSuccess)"
    assert entered.count("ConnectTiDBCloud") >= 2, "the connection was polled until ACTIVE"

    # TiDB Cloud (the double) has the connection ACTIVE, to this endpoint service, through its endpoint.
    connection_id = output["tidb_cloud_connection_id"]
    [connection] = [c for c in double.state()["connections"] if c["id"] == connection_id]
    assert connection["state"] == "ACTIVE", connection
    assert connection["service_name"] == output["endpoint_service_name"]
    assert connection["cluster_id"] == stack["parameters"]["TiDBCloudClusterId"]
    endpoint_id = connection["endpoint_id"]
    # The double made that endpoint as TiDB Cloud would, with ordinary credentials of its account
    # (the emulator's record of every authorized request says who asked).
    log = Path(stack["state_dir"]) / "logs/authorizations.jsonl"
    creators = {entry["principal"] for entry in map(json.loads, log.read_text().splitlines())
                if entry["action"] == "ec2:CreateVpcEndpoint" and entry["decision"] == "Allowed"}
    assert creators == {f"arn:aws:iam::{tidb_account}:user/tidb-cloud"}, creators

    # AWS agrees: the service admits TiDB Cloud's account (read from the API), and its connection
    # from exactly that endpoint is accepted.
    ec2 = aws("ec2")
    service_id = output["endpoint_service_id"]
    principals = ec2.describe_vpc_endpoint_service_permissions(ServiceId=service_id)["AllowedPrincipals"]
    assert [p["Principal"] for p in principals] == [f"arn:aws:iam::{tidb_account}:root"]
    connections = ec2.describe_vpc_endpoint_connections(
        Filters=[{"Name": "service-id", "Values": [service_id]}])["VpcEndpointConnections"]
    assert [(c["VpcEndpointId"], c["VpcEndpointOwner"], c["VpcEndpointState"]) for c in connections] == [
        (endpoint_id, tidb_account, "available")]
    [balancer] = driver.inventory(identifier, network.security_group_id)["load_balancers"]
    zone_ids = {z["ZoneName"]: z for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    # The zones shared with TiDB Cloud, and the DB subnet group's (the database is in use1-az6).
    assert {zone_ids[z["ZoneName"]]["ZoneId"] for z in balancer["AvailabilityZones"]} == {"use1-az1", "use1-az2", "use1-az6"}

    # What TiDB Cloud was asked, and how long acceptance took.
    kinds = Counter(kind for kind, _, status in requests if status != 401)
    assert {status for _, _, status in requests} <= {200, 401}, requests
    assert kinds["create"] == 1 and kinds["getAvailabilityZones"] >= 1, requests
    requested = watch.first_seen.get((endpoint_id, "pendingAcceptance"))
    accepted = watch.first_seen.get((endpoint_id, "available"))
    assert accepted is not None
    waited = (resumed[0]["timestamp"] - submitted[0]["timestamp"]).total_seconds()
    report(f"TiDB Cloud requests in one provisioning ({identifier}): {double.describe(requests)} "
           f"(401s are digest challenges)")
    report(f"TiDB Cloud's endpoint {endpoint_id}: connection request first seen -> accepted "
           f"{(accepted - requested) if requested else float('nan'):.2f} s (created {watch.created.get(endpoint_id)}); "
           f"AwaitAcceptance .waitForTaskToken submitted -> resumed "
           f"{waited:.2f} s; provisioning took "
           f"{(execution['stopDate'] - execution['startDate']).total_seconds():.1f} s")

    # The stack told its topic, with what a TiDB Cloud user needs.
    [told] = driver.told(identifier, "provisioned")
    assert (told["tidb_cloud_connection_id"], told["endpoint_service_name"], told["target_state"]) == (
        connection_id, output["endpoint_service_name"], "healthy")
    assert sorted(told["zones"]) == sorted(z["ZoneName"] for z in balancer["AvailabilityZones"])

    # Untag: the connection is deleted in TiDB Cloud first, then everything else.
    before = driver.inventory(identifier, network.security_group_id)
    nlb_groups = {g["GroupId"] for g in before["security_groups"]}
    offset = double.log_offset()
    known = driver.known("deprovision")
    aws("rds").remove_tags_from_resource(ResourceName=db["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])
    [teardown_arn] = driver.new_executions("deprovision", identifier, known)
    teardown = driver.run_to_end(teardown_arn)
    after = driver.inventory(identifier, network.security_group_id, nlb_groups)
    report(f"untag with TiDB Cloud ({identifier}): before {before.summary()}; after {after.summary()}; "
           f"TiDB Cloud: {double.describe(double.requests_since(offset))}")

    assert teardown["status"] == "SUCCEEDED", why(teardown)
    assert json.loads(teardown["output"])["removed"]["tidb_cloud_connection"]["removed"] == [connection_id]
    [untold] = driver.told(identifier, "torn-down")
    assert untold["removed"]["tidb_cloud_connection"]["removed"] == [connection_id]
    assert connection_id not in {c["id"] for c in double.state()["connections"]}
    assert after.empty(), after.summary()
    assert not ec2.describe_vpc_endpoint_connections(
        Filters=[{"Name": "service-id", "Values": [service_id]}, {"Name": "vpc-endpoint-state",
                                                                   "Values": ["pendingAcceptance", "available"]}],
    )["VpcEndpointConnections"]


# --- 8. wrong keys -----------------------------------------------------------------------------------------


def test_wrong_keys_fail_with_tidb_cloud_unauthorized_and_leave_nothing(
        tidb_cloud: dict[str, Any], tidb_aws: Aws, tidb_driver: Any, tidb_network: scenario.Network) -> None:
    """TiDB Cloud no longer accepts the key pair the stack's secret holds (the double now knows
    another pair)."""
    double, keys, driver, aws = tidb_cloud["double"], tidb_cloud["keys"], tidb_driver, tidb_aws
    identifier, network = "wrongkey-db", tidb_network
    double.replace_api_key("e2e-other-public-key", "e2e-other-private-" + secrets.token_hex(12))
    try:
        db = scenario.create_database(aws, network, identifier)
        offset = double.log_offset()
        known = driver.known("provision")
        scenario.opt_in(aws, db["DBInstanceArn"])
        [arn] = driver.new_executions("provision", identifier, known)
        execution = driver.run_to_end(arn)
        requests = double.requests_since(offset)
        connections = double.state()["connections"]
    finally:
        double.replace_api_key(keys["public_key"], keys["private_key"])
    inventory = driver.inventory(identifier, network.security_group_id)
    report(f"wrong keys ({identifier}): {why(execution)[:160]}...; TiDB Cloud: {double.describe(requests)}; "
           f"{inventory.summary()}")

    assert execution["status"] == "FAILED", why(execution)
    assert execution["error"] == "TiDBCloudUnauthorized", why(execution)
    assert keys["private_key"] not in execution["cause"]
    assert driver.states_entered(arn)[-5:] == ["PlanZones", "ReleaseTurn", "ReleaseDatabaseTurn", "HowItEnded", "ProvisioningFailed"], \
        "TiDB Cloud is asked before anything is created"
    assert requests and {status for _, _, status in requests} == {401}, requests
    assert connections == []
    assert inventory.empty(), inventory.summary()


# --- 9. the connection fails twice -------------------------------------------------------------------------


def test_a_connection_failing_twice_fails_with_tidb_clouds_message_and_rolls_back(
        tidb_cloud: dict[str, Any], tidb_aws: Aws, tidb_driver: Any, tidb_network: scenario.Network) -> None:
    double, driver, aws = tidb_cloud["double"], tidb_driver, tidb_aws
    identifier, network = "reports-db", tidb_network
    first = "the endpoint service refused the connection (injected by the e2e test)"
    second = "the endpoint service refused the connection again (injected by the e2e test)"
    db = scenario.create_database(aws, network, identifier)

    rearmed = threading.Event()
    done = threading.Event()

    def rearm() -> None:
        # fail_next_create is used up by the next create: arm it again for the one after.
        while not done.is_set():
            if not double.state()["faults"]["fail_next_create"]:
                double.faults(fail_next_create=second)
                rearmed.set()
                return
            time.sleep(0.2)

    double.faults(fail_next_create=first)
    watcher = threading.Thread(target=rearm, name="rearm-fault", daemon=True)
    offset = double.log_offset()
    known = driver.known("provision")
    try:
        watcher.start()
        scenario.opt_in(aws, db["DBInstanceArn"])
        [arn] = driver.new_executions("provision", identifier, known)
        execution = driver.run_to_end(arn)
    finally:
        done.set()
        watcher.join(timeout=5)
        double.faults(fail_next_create="")
    requests = double.requests_since(offset)
    service_name = state_output(driver, arn, "CreateEndpointService")["endpoint_service"]["service_name"]
    inventory = driver.inventory(identifier, network.security_group_id)
    report(f"TiDB Cloud connection FAILED twice ({identifier}): {execution['error']}; TiDB Cloud: "
           f"{double.describe(requests)}; after rollback {inventory.summary()}")

    assert rearmed.is_set(), "the first create never happened"
    assert execution["status"] == "FAILED", why(execution)
    assert execution["error"] == "TiDBCloudConnectionFailed", why(execution)
    assert second in execution["cause"], execution["cause"]
    kinds = Counter(kind for kind, _, status in requests if status == 200)
    assert kinds["create"] == 2, requests
    assert driver.states_entered(arn)[-5:] == ["RollBack", "ReleaseTurn", "ReleaseDatabaseTurn", "HowItEnded", "ProvisioningFailed"]
    rollbacks = driver.rollbacks_of(arn)
    assert [r["status"] for r in rollbacks] == ["SUCCEEDED"], rollbacks
    assert not [c for c in double.state()["connections"] if c["service_name"] == service_name]
    assert inventory.empty(), inventory.summary()
    # Told with TiDB Cloud's own message and what the rollback removed (at LogLevel=error too).
    [failed] = driver.told(identifier, "provisioning-failed")
    assert (failed["error"], failed["cause"]) == (execution["error"], execution["cause"])
    assert failed["rollback"]["removed"]["endpoint_service"]["removed"] == [service_name.rsplit(".", 1)[-1]], failed


# --- 10. the wait's announcement fails once -------------------------------------------------------------


def test_a_failed_putevents_entry_is_retried(tidb_cloud: dict[str, Any], tidb_aws: Aws, tidb_driver: Any,
                                             tidb_network: scenario.Network) -> None:
    """PutEvents can answer 200 with a failed entry; the wait's task then fails with
    EventBridge.FailedEntry, which is transient and must not roll the provisioning back."""
    stack, driver, aws = tidb_cloud["stack"], tidb_driver, tidb_aws
    identifier, network = "ledger-db", tidb_network
    db = scenario.create_database(aws, network, identifier)
    control.faults(stack["endpoint"], [{"action": "events:PutEvents", "fault": "failed-entry", "count": 1}])
    try:
        known = driver.known("provision")
        scenario.opt_in(aws, db["DBInstanceArn"])
        [arn] = driver.new_executions("provision", identifier, known)
        execution = driver.run_to_end(arn)
    finally:
        control.faults(stack["endpoint"], None)
    failed = [e["taskFailedEventDetails"]["error"] for e in driver.history(arn) if e["type"] == "TaskFailed"]
    report(f"failed PutEvents entry ({identifier}): {execution['status']}, task failures {failed}")

    assert failed == ["EventBridge.FailedEntry"], failed
    assert execution["status"] == "SUCCEEDED", why(execution)
    known = driver.known("deprovision")
    aws("rds").remove_tags_from_resource(ResourceName=db["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])
    [teardown] = driver.new_executions("deprovision", identifier, known)
    assert driver.run_to_end(teardown)["status"] == "SUCCEEDED"


# --- the connection still deleting: the teardown's poll ---------------------------------------------------


def test_a_connection_still_deleting_is_polled_until_tidb_cloud_has_removed_it(
        tidb_cloud: dict[str, Any], tidb_aws: Aws, tidb_driver: Any, tidb_network: scenario.Network) -> None:
    """TiDB Cloud still shows the deleted connection (DELETING) on the read right after the delete:
    the removal fails with TeardownPending, the teardown waits in its poll loop and removes it
    again, and goes on only once TiDB Cloud has dropped it."""
    double, driver, aws = tidb_cloud["double"], tidb_driver, tidb_aws
    identifier = "deleting-db"
    db = scenario.create_database(aws, tidb_network, identifier)
    _, provisioned = driver.opt_in_and_follow(db["DBInstanceArn"], identifier)
    assert provisioned["status"] == "SUCCEEDED", why(provisioned)
    connection_id = json.loads(provisioned["output"])["tidb_cloud_connection_id"]
    double.faults(deleting_reads=1)
    try:
        known = driver.known("deprovision")
        aws("rds").remove_tags_from_resource(ResourceName=db["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])
        [arn] = driver.new_executions("deprovision", identifier, known)
        teardown = driver.run_to_end(arn)
    finally:
        double.faults(deleting_reads=0)
    entered = driver.states_entered(arn)
    first = entered.index("RemoveTiDBCloudConnection")
    report(f"TiDB Cloud connection still deleting ({identifier}): {teardown['status']}, "
           f"{' -> '.join(entered[first:first + 6])}")

    assert teardown["status"] == "SUCCEEDED", why(teardown)
    assert entered[first:first + 6] == ["RemoveTiDBCloudConnection", "TiDBCloudConnectionPending",
                                        "WaitForTiDBCloudConnection", "CountTiDBCloudConnectionPoll",
                                        "RemoveTiDBCloudConnection", "RemoveEndpointService"], entered
    assert connection_id not in {c["id"] for c in double.state()["connections"]}
    after = driver.inventory(identifier, tidb_network.security_group_id)
    assert after.empty(), after.summary()


# --- 11. metrics at the quietest log level ---------------------------------------------------------------


def test_a_failover_is_counted_in_cloudwatch_at_log_level_error(tidb_cloud: dict[str, Any], tidb_aws: Aws,
                                                               tidb_driver: Any, tidb_network: scenario.Network) -> None:
    stack, driver, aws = tidb_cloud["stack"], tidb_driver, tidb_aws
    assert stack["parameters"]["LogLevel"] == "error"
    identifier = "metrics-db"
    db = scenario.create_database(aws, tidb_network, identifier, multi_az=True)
    arn, provisioned = driver.opt_in_and_follow(db["DBInstanceArn"], identifier)
    assert provisioned["status"] == "SUCCEEDED", provisioned

    aws("rds").reboot_db_instance(DBInstanceIdentifier=identifier, ForceFailover=True)

    def counted() -> set[str]:
        metrics = aws("cloudwatch").list_metrics(Namespace="TiDBPrivateLink")["Metrics"]
        return {m["MetricName"] for m in metrics
                if {"Name": "DBInstance", "Value": identifier} in m["Dimensions"]}

    deadline = time.time() + 60
    while time.time() < deadline and "TargetsRegistered" not in counted():
        time.sleep(0.5)
    report(f"metrics of {identifier} after a failover at LogLevel=error: {sorted(counted())}")
    assert "TargetsRegistered" in counted()

    known = driver.known("deprovision")
    aws("rds").remove_tags_from_resource(ResourceName=db["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])
    [teardown] = driver.new_executions("deprovision", identifier, known)
    assert driver.run_to_end(teardown)["status"] == "SUCCEEDED"


# --- scripts/demo, as a new user runs it ----------------------------------------------------------------


def test_the_demo_shows_both_sides_and_then_leaves_nothing(tidb_cloud: dict[str, Any]) -> None:
    """`scripts/demo` on a stack as `scripts/local-stack up` starts it by default: TiDB Cloud's
    connection, TiDB Cloud's endpoint connection and its acceptance, the target's health, each
    in the order they happen, then the teardown down to nothing on either side."""
    stack = tidb_cloud["stack"]
    demo = subprocess.run([str(ROOT / "scripts/demo")], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "LOCAL_STACK_DIR": stack["state_dir"]})
    report("scripts/demo: " + " | ".join(l.strip() for l in demo.stdout.splitlines() if "SUCCEEDED" in l))
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-2000:]
    provisioning, teardown = demo.stdout.split("5. Opt out", 1)

    def order(text: str, *marks: str) -> list[int]:
        return [text.find(mark) for mark in marks]

    tidb = order(provisioning, ": CREATING", ": PENDING_ACCEPTANCE", ": ACTIVE")
    endpoint = order(provisioning, ": pendingAcceptance", ": pending\n", ": available")
    # The acceptor's call and the `pending` it causes may show up in either order within a poll.
    accepted = order(provisioning, ": pendingAcceptance", "acceptor        accepted the request", ": available")
    for positions in (tidb, endpoint, accepted):
        assert -1 not in positions and positions == sorted(positions), (positions, provisioning)
    assert ": healthy" in provisioning and "In TiDB Cloud (GET" in provisioning
    assert "TiDB Cloud      connection" in teardown and ": gone" in teardown
    assert "What is left of the link\n  nothing:" in teardown, teardown
    # The demo ends with what `scripts/status --local` says: the link is gone.
    ending = teardown.rsplit("What `scripts/status --local` says of it", 1)
    assert len(ending) == 2 and ": no link (" in ending[1] and "healthy" not in ending[1], teardown


# --- scripts/status ---------------------------------------------------------------------------------


def test_status_shows_the_link_and_fails_once_its_target_is_unhealthy(
        tidb_cloud: dict[str, Any], tidb_aws: Aws, tidb_driver: Any, tidb_network: scenario.Network) -> None:
    stack, driver, aws, network = tidb_cloud["stack"], tidb_driver, tidb_aws, tidb_network
    identifier = "status-db"
    db = scenario.create_database(aws, network, identifier)
    arn, provisioned = driver.opt_in_and_follow(db["DBInstanceArn"], identifier)
    assert provisioned["status"] == "SUCCEEDED", provisioned

    def status() -> tuple[int, dict[str, Any]]:
        run = subprocess.run([str(ROOT / "scripts/status"), "--local", "--json"], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "LOCAL_STACK_DIR": stack["state_dir"]})
        [link] = [l for l in json.loads(run.stdout)["links"] if l["db_instance_identifier"] == identifier]
        return run.returncode, link

    code, link = status()
    assert (code, link["problems"]) == (0, []), link
    assert link["tidb_cloud_connection"]["state"] == "ACTIVE" and link["last_provisioning"]["status"] == "SUCCEEDED"
    assert [c["state"] for c in link["endpoint_connections"]] == ["available"]

    # Someone removes the rule that lets the load balancer reach the database.
    ec2 = aws("ec2")
    [rule] = [p for p in ec2.describe_security_groups(GroupIds=[network.security_group_id])["SecurityGroups"][0][
        "IpPermissions"] if p.get("UserIdGroupPairs")]
    ec2.revoke_security_group_ingress(GroupId=network.security_group_id, IpPermissions=[rule])
    code, link = status()
    report(f"status after the rule went: exit {code}, {link['problems']}")
    assert code == 1 and link["problems"] and link["problems"][0].startswith("no healthy target"), link

    # sync-targets tells the unhealthy target once, however many runs find it so.
    function = next(f for f in stack["functions"] if f["logical_id"] == "SyncTargetsFunction")
    scheduled = (ROOT / "tests/fixtures/events/scheduled-event.json").read_bytes()
    [group] = driver.inventory(identifier, network.security_group_id)["target_groups"]

    def sync() -> list[str]:
        answer = aws("lambda").invoke(FunctionName=function["name"], Payload=scheduled)
        assert "FunctionError" not in answer, answer["Payload"].read()
        tags = aws("elbv2").describe_tags(ResourceArns=[group["TargetGroupArn"]])["TagDescriptions"][0]["Tags"]
        return [t["Value"] for t in tags if t["Key"] == "tidb-privatelink:target-not-healthy"]

    assert len(sync()) == 1 and len(sync()) == 1
    told = driver.told(identifier, "target-not-healthy")
    assert len(told) == 1 and told[0]["problem"].startswith("TargetNotHealthy"), told
    ec2.authorize_security_group_ingress(GroupId=network.security_group_id, IpPermissions=[rule])
    assert sync() == [], "the tag stayed once the target was healthy again"

    known = driver.known("deprovision")
    aws("rds").remove_tags_from_resource(ResourceName=db["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])
    [teardown] = driver.new_executions("deprovision", identifier, known)
    assert driver.run_to_end(teardown)["status"] == "SUCCEEDED"
