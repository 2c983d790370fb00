"""The lifecycle of an opted-in instance on the local stack: teardown by untagging and by deleting
the instance, rollback of a failed provisioning, teardown that runs twice or meets half a
provisioning, failover, and repeated or racing tag events. Everything is started the way a user
(or AWS) starts it and checked by reading AWS back as the stack's administrator.

The scenarios that only wait are started together (``started``) so their Wait states overlap; the
one that changes IAM for the whole stack (``test_a_failure_midway_...``) runs first, alone.
Counts and timings are printed with an ``E2E:`` prefix (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from local_stack import scenario

Aws = Callable[[str], Any]
ROOT = Path(__file__).resolve().parents[2]


def report(line: str) -> None:
    print(f"E2E: {line}", flush=True)


def why(execution: dict[str, Any]) -> str:
    return f"{execution['status']}: {execution.get('error')}: {execution.get('cause')}"


def resolve(dns_port: int, name: str) -> list[str]:
    """IPv4 addresses of ``name`` from the emulator's DNS (what the VPC's resolver answers)."""
    query_id = random.randint(0, 0xFFFF)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"
    message = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(message, ("127.0.0.1", dns_port))
        data, _ = sock.recvfrom(4096)
    answer_id, _, _, answers, _, _ = struct.unpack("!HHHHHH", data[:12])
    assert answer_id == query_id
    offset, out = 12 + len(qname) + 4, []
    for _ in range(answers):
        offset += 2 if data[offset] & 0xC0 == 0xC0 else len(qname)
        rtype, _, _, length = struct.unpack("!HHIH", data[offset : offset + 10])
        if rtype == 1:
            out.append(socket.inet_ntoa(data[offset + 10 : offset + 10 + length]))
        offset += 10 + length
    return out


def database_ip(aws: Aws, stack: dict[str, Any], vpc_id: str, identifier: str) -> str:
    """The instance's current address: its endpoint name resolved, and that address is the
    RDSNetworkInterface of the instance's VPC in the instance's zone."""
    db = aws("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    [address] = resolve(stack["dns_port"], db["Endpoint"]["Address"])
    interfaces = aws("ec2").describe_network_interfaces(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "description", "Values": ["RDSNetworkInterface"]},
    ])["NetworkInterfaces"]
    assert [i["AvailabilityZone"] for i in interfaces if i["PrivateIpAddress"] == address] == [db["AvailabilityZone"]]
    return address


def targets(aws: Aws, target_group_arn: str) -> set[str]:
    health = aws("elbv2").describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
    return {t["Target"]["Id"] for t in health}


def product_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags provisioning records on the instance (step 9), not the opt-in tag."""
    return {k: v for k, v in tags.items() if k.startswith("tidb-privatelink:")}


def turn_span(driver: Any, arn: str) -> tuple[Any, Any]:
    """When an execution went on with its turn (left IsItOurTurn for its work) and released it."""
    events = driver.history(arn)
    entered = [(e["stateEnteredEventDetails"]["name"], e["timestamp"]) for e in events if e["type"].endswith("StateEntered")]
    went = next(t for (name, _), (following, t) in zip(entered, entered[1:])
                if name == "IsItOurTurn" and following != "WaitForTurn")
    released = next(t for name, t in entered if name == "ReleaseTurn")
    return went, released


def assert_one_set(inventory: Any) -> None:
    counts = inventory.counts()
    assert {k: counts[k] for k in ("target_groups", "load_balancers", "listeners", "security_groups",
                                   "db_sg_rules", "endpoint_services")} == dict.fromkeys(
        ("target_groups", "load_balancers", "listeners", "security_groups", "db_sg_rules", "endpoint_services"), 1
    ), inventory.summary()


@pytest.fixture(scope="module")
def lifecycle_network(aws: Aws) -> scenario.Network:
    return scenario.create_network(aws, "lifecycle", "10.31")


# --- 3. a failure mid-way (alone: it changes IAM for the whole stack) ---------------------------------


def test_a_failure_midway_rolls_back_and_fails_with_the_original_error(
        aws: Aws, driver: Any, stack: dict[str, Any], lifecycle_network: scenario.Network) -> None:
    """The endpoint service step is denied ec2:CreateVpcEndpointServiceConfiguration (IAM is
    enforced): everything created before it is rolled back by the deprovision workflow, and the
    provisioning ends FAILED with the step's own error."""
    identifier = "refunds-db"
    db = scenario.create_database(aws, lifecycle_network, identifier)
    role = next(f["role_arn"] for f in stack["functions"] if f["logical_id"] == "EndpointServiceFunction").split("/")[-1]
    iam = aws("iam")
    iam.put_role_policy(RoleName=role, PolicyName="e2e-deny-endpoint-service", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "ec2:CreateVpcEndpointServiceConfiguration", "Resource": "*"}],
    }))
    before_rollback = None
    try:
        known = driver.known("provision")
        scenario.opt_in(aws, db["DBInstanceArn"])
        [arn] = driver.new_executions("provision", identifier, known)
        execution = None
        for event in scenario.follow(aws, arn, timeout=300):
            if event["type"] == "WaitStateEntered" and before_rollback is None:
                # Waiting for the NLB: everything but the endpoint service exists now.
                before_rollback = driver.inventory(identifier, lifecycle_network.security_group_id)
            if event["type"] == "__end__":
                execution = event["execution"]
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="e2e-deny-endpoint-service")
    assert execution is not None
    assert before_rollback is not None, "the provisioning never waited for its load balancer"
    nlb_groups = {g["GroupId"] for g in before_rollback["security_groups"]}
    after = driver.inventory(identifier, lifecycle_network.security_group_id, nlb_groups)
    report(f"failure injected at CreateEndpointService ({identifier}): before rollback {before_rollback.summary()}; "
           f"after {after.summary()}")

    assert execution["status"] == "FAILED", why(execution)
    assert execution["error"] == "AwsRequestFailed", why(execution)
    # EC2 answers a denial UnauthorizedOperation (not AccessDenied), naming the action.
    assert "UnauthorizedOperation" in execution["cause"], why(execution)
    assert "is not authorized to perform: ec2:CreateVpcEndpointServiceConfiguration" in execution["cause"], why(execution)
    entered = driver.states_entered(arn)
    assert entered[-6:] == ["CreateEndpointService", "RollBack", "ReleaseTurn", "ReleaseDatabaseTurn", "HowItEnded", "ProvisioningFailed"], entered
    submitted = [e["taskSubmittedEventDetails"] for e in driver.history(arn) if e["type"] == "TaskSubmitted"]
    assert [(s["resourceType"], s["resource"]) for s in submitted] == [("states", "startExecution.sync:2")]

    rollbacks = driver.rollbacks_of(arn)
    assert [r["status"] for r in rollbacks] == ["SUCCEEDED"], rollbacks
    removed = json.loads(rollbacks[0]["output"])["removed"]
    assert removed["load_balancer"]["removed"] and removed["target_group"]["removed"], removed

    assert before_rollback.counts()["target_groups"] == 1 and before_rollback.counts()["load_balancers"] == 1
    assert before_rollback.counts()["security_groups"] == 1 and before_rollback.counts()["db_sg_rules"] == 1
    assert after.empty(), after.summary()
    assert not product_tags(driver.instance_tags(identifier))
    # One message says it all (the error, and what the rollback removed, from the execution's
    # history); the rollback's own teardown tells nothing more.
    [failed] = driver.told(identifier, "provisioning-failed")
    assert (failed["error"], failed["cause"], failed["rollback"]["removed"]) == (
        execution["error"], execution["cause"], removed), failed
    assert driver.notify_handled(rollbacks[0]["executionArn"]), "the notify function never saw the rollback end"
    assert not driver.told(identifier, "torn-down", timeout=0)


# --- the scenarios that mostly wait, started together ------------------------------------------------


@pytest.fixture(scope="module")
def started(aws: Aws, driver: Any, lifecycle_network: scenario.Network) -> dict[str, Any]:
    """Creates the instances of the waiting scenarios and makes their first moves at once."""
    network = lifecycle_network
    known = {"provision": driver.known("provision"), "deprovision": driver.known("deprovision")}
    dbs = {
        "ledger-db": scenario.create_database(aws, network, "ledger-db"),
        "crm-db": scenario.create_database(aws, network, "crm-db"),
        "inventory-db": scenario.create_database(aws, network, "inventory-db", multi_az=True),
        "payments-db": scenario.create_database(aws, network, "payments-db"),
        "audit-db": scenario.create_database(aws, network, "audit-db"),
        "invoices-db": scenario.create_database(aws, network, "invoices-db"),
    }
    for identifier in ("ledger-db", "crm-db", "inventory-db", "invoices-db"):
        scenario.opt_in(aws, dbs[identifier]["DBInstanceArn"])
    # 6: the same tag twice in a row (two CloudTrail events, two executions).
    scenario.opt_in(aws, dbs["payments-db"]["DBInstanceArn"])
    scenario.opt_in(aws, dbs["payments-db"]["DBInstanceArn"])
    # 6: tagged, and untagged right after: the events race.
    scenario.opt_in(aws, dbs["audit-db"]["DBInstanceArn"])
    aws("rds").remove_tags_from_resource(ResourceName=dbs["audit-db"]["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])
    return {"dbs": dbs, "known": known, "network": network}


def provisioned(driver: Any, started: dict[str, Any], identifier: str) -> tuple[str, dict[str, Any]]:
    [arn] = driver.new_executions("provision", identifier, started["known"]["provision"])
    execution = driver.run_to_end(arn)
    assert execution["status"] == "SUCCEEDED", why(execution)
    return arn, execution


# --- 1. untagging ------------------------------------------------------------------------------------


def test_untagging_removes_everything_the_stack_created(aws: Aws, driver: Any, started: dict[str, Any]) -> None:
    identifier, network = "ledger-db", started["network"]
    provisioned(driver, started, identifier)
    before = driver.inventory(identifier, network.security_group_id)
    assert_one_set(before)
    assert product_tags(driver.instance_tags(identifier)), "provisioning records what serves the instance"
    nlb_groups = {g["GroupId"] for g in before["security_groups"]}

    known = driver.known("deprovision")
    aws("rds").remove_tags_from_resource(ResourceName=started["dbs"][identifier]["DBInstanceArn"],
                                         TagKeys=[scenario.OPT_IN_TAG])
    [arn] = driver.new_executions("deprovision", identifier, known)
    execution = driver.run_to_end(arn)
    after = driver.inventory(identifier, network.security_group_id, nlb_groups)
    report(f"untag ({identifier}): before {before.summary()}; after {after.summary()}")

    assert execution["status"] == "SUCCEEDED", why(execution)
    assert after.empty(), after.summary()
    assert not product_tags(driver.instance_tags(identifier)), driver.instance_tags(identifier)
    # The DB's security group keeps its own rule (MySQL from the VPC).
    rules = aws("ec2").describe_security_groups(GroupIds=[network.security_group_id])["SecurityGroups"][0]["IpPermissions"]
    assert [r for r in rules if r["FromPort"] == 3306 and network.cidr in [c["CidrIp"] for c in r["IpRanges"]]], rules


# --- 1b. switching the tag off -------------------------------------------------------------------------


def test_setting_the_tag_to_off_removes_everything(aws: Aws, driver: Any, started: dict[str, Any]) -> None:
    identifier, network = "invoices-db", started["network"]
    provisioned(driver, started, identifier)
    before = driver.inventory(identifier, network.security_group_id)
    assert_one_set(before)
    nlb_groups = {g["GroupId"] for g in before["security_groups"]}

    known = {"provision": driver.known("provision"), "deprovision": driver.known("deprovision")}
    scenario.opt_in(aws, started["dbs"][identifier]["DBInstanceArn"], value="Disabled")
    [teardown_arn] = driver.new_executions("deprovision", identifier, known["deprovision"])
    teardown = driver.run_to_end(teardown_arn)
    after = driver.inventory(identifier, network.security_group_id, nlb_groups)
    # The same AddTagsToResource event also started a provisioning; the current tag ends it as a no-op.
    [provision_arn] = driver.new_executions("provision", identifier, known["provision"])
    provision = driver.run_to_end(provision_arn)
    report(f"tag set to Disabled ({identifier}): before {before.summary()}; after {after.summary()}")

    assert teardown["status"] == "SUCCEEDED", why(teardown)
    assert after.empty(), after.summary()
    assert provision["status"] == "SUCCEEDED" and driver.states_entered(provision_arn)[-1] == "NothingToDo"
    # Told once each: provisioned, then removed; the no-op provisioning tells nothing.
    [removed] = driver.told(identifier, "torn-down")
    assert removed["removed"]["endpoint_service"]["removed"], removed
    assert driver.notify_handled(provision_arn), "the notify function never saw the no-op provisioning end"
    assert len(driver.told(identifier, "provisioned")) == 1


# --- 2. deleting the instance ------------------------------------------------------------------------


def test_deleting_the_instance_removes_everything_the_stack_created(aws: Aws, driver: Any,
                                                                   started: dict[str, Any]) -> None:
    identifier, network = "crm-db", started["network"]
    provisioned(driver, started, identifier)
    before = driver.inventory(identifier, network.security_group_id)
    assert_one_set(before)
    nlb_groups = {g["GroupId"] for g in before["security_groups"]}

    known = driver.known("deprovision")
    aws("rds").delete_db_instance(DBInstanceIdentifier=identifier, SkipFinalSnapshot=True)
    [arn] = driver.new_executions("deprovision", identifier, known)
    execution = driver.run_to_end(arn)
    after = driver.inventory(identifier, network.security_group_id, nlb_groups)
    report(f"delete instance ({identifier}): before {before.summary()}; after {after.summary()}")

    assert execution["status"] == "SUCCEEDED", why(execution)
    assert "RemoveSecurityGroups" in driver.states_entered(arn)
    assert after.empty(), after.summary()


# --- 4. teardown twice, on a half-provisioned instance -----------------------------------------------


def test_deprovisioning_twice_a_half_provisioned_instance_is_clean(aws: Aws, driver: Any,
                                                                 started: dict[str, Any]) -> None:
    """A provisioning stopped while it waits for its NLB (target group, security groups, rule, NLB
    and listener exist; no endpoint service), then the deprovision workflow by hand, twice."""
    identifier, network = "halfway-db", started["network"]
    scenario.create_database(aws, network, identifier)
    arn = driver.start("provision", identifier)
    half = None
    for event in scenario.follow(aws, arn, timeout=120):
        if event["type"] == "WaitStateEntered" and event["stateEnteredEventDetails"]["name"] == "WaitForLoadBalancer":
            aws("stepfunctions").stop_execution(executionArn=arn, error="E2E.Stopped", cause="half-provisioned on purpose")
        if event["type"] == "__end__":
            assert event["execution"]["status"] == "ABORTED", why(event["execution"])
    time.sleep(1)  # nothing may run on after the stop
    half = driver.inventory(identifier, network.security_group_id)
    counts = half.counts()
    assert (counts["target_groups"], counts["security_groups"], counts["db_sg_rules"], counts["load_balancers"],
            counts["endpoint_services"]) == (1, 1, 1, 1, 0), half.summary()
    nlb_groups = {g["GroupId"] for g in half["security_groups"]}

    first = driver.run_to_end(driver.start("deprovision", identifier))
    after_first = driver.inventory(identifier, network.security_group_id, nlb_groups)
    second = driver.run_to_end(driver.start("deprovision", identifier))
    after_second = driver.inventory(identifier, network.security_group_id, nlb_groups)
    report(f"half-provisioned ({identifier}): {half.summary()}; after 1st teardown {after_first.summary()}; "
           f"after 2nd {after_second.summary()}")

    assert first["status"] == "SUCCEEDED", why(first)
    assert second["status"] == "SUCCEEDED", why(second)
    removed_first = json.loads(first["output"])["removed"]
    assert removed_first["endpoint_service"]["removed"] == [] and removed_first["load_balancer"]["removed"]
    removed_second = json.loads(second["output"])["removed"]
    assert all(step["removed"] == [] for step in removed_second.values()), removed_second
    assert after_first.empty(), after_first.summary()
    assert after_second.empty(), after_second.summary()


# --- 5. failover ---------------------------------------------------------------------------------------


def test_failover_leaves_exactly_the_new_address_in_the_target_group(aws: Aws, driver: Any, stack: dict[str, Any],
                                                                    started: dict[str, Any]) -> None:
    identifier, network = "inventory-db", started["network"]
    provisioned(driver, started, identifier)
    [group] = driver.inventory(identifier, network.security_group_id)["target_groups"]
    group_arn = group["TargetGroupArn"]
    old_ip = database_ip(aws, stack, network.vpc_id, identifier)
    assert targets(aws, group_arn) == {old_ip}
    zone_before = aws("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["AvailabilityZone"]

    started_at = time.monotonic()
    aws("rds").reboot_db_instance(DBInstanceIdentifier=identifier, ForceFailover=True)
    new_ip = database_ip(aws, stack, network.vpc_id, identifier)
    zone_after = aws("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["AvailabilityZone"]
    assert new_ip != old_ip and zone_after != zone_before

    seen: list[tuple[float, frozenset[str]]] = []

    def watch_until(done: Callable[[set[str]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = targets(aws, group_arn)
            seen.append((time.monotonic() - started_at, frozenset(now)))
            if done(now):
                return True
            time.sleep(0.2)
        return False

    # The RDS failover events (RDS-EVENT-0013/0015/0049) reach sync-targets through its rule.
    assert watch_until(lambda now: new_ip in now, 60), f"the new address was never registered: {seen[-1]}"
    registered_after = seen[-1][0]
    by_events_alone = watch_until(lambda now: now == {new_ip}, 5)
    if not by_events_alone:
        # The old address goes on a later run, once the new target is healthy: the backstop
        # schedule's run, here invoked at once with the schedule's event.
        function = next(f for f in stack["functions"] if f["logical_id"] == "SyncTargetsFunction")
        event = json.loads((ROOT / "tests/fixtures/events/scheduled-event.json").read_text())
        answer = aws("lambda").invoke(FunctionName=function["name"], Payload=json.dumps(event).encode())
        assert "FunctionError" not in answer, answer["Payload"].read()
        assert watch_until(lambda now: now == {new_ip}, 30), f"the old address stayed: {seen[-1]}"
    exact_after = seen[-1][0]
    report(f"failover ({identifier}): {old_ip} ({zone_before}) -> {new_ip} ({zone_after}); new address registered "
           f"{registered_after:.1f} s after the reboot call, target group exactly the new address after "
           f"{exact_after:.1f} s ({'RDS events alone' if by_events_alone else 'RDS events + one scheduled-shaped run'})")

    assert targets(aws, group_arn) == {new_ip}
    assert all(observed for _, observed in seen), "the target group was empty at some point"
    # The flap guard, from the function's own log: the new address was registered by one run and
    # the old one removed by a later run.
    function = next(f for f in stack["functions"] if f["logical_id"] == "SyncTargetsFunction")
    changes = []
    for line in (Path(stack["state_dir"]) / "logs" / f"{function['name']}.log").read_text().splitlines():
        if line.startswith("{") and f'"db_instance":"{identifier}"' in line:
            record = json.loads(line)
            fields, request = record.get("fields", {}), (record.get("span") or {}).get("requestId")
            if fields.get("message") == "new database address registered":
                changes.append(("registered", fields.get("ip"), request))
            elif fields.get("message") == "old database addresses deregistered":
                changes.append(("deregistered", fields.get("ips"), request))
    assert [(kind, ip) for kind, ip, _ in changes][-2:] == [("registered", new_ip), ("deregistered", json.dumps([old_ip]))], changes
    assert changes[-1][2] != changes[-2][2], "registered and deregistered in the same run"
    # The completed move is told once, with both addresses.
    [moved] = driver.told(identifier, "target-moved")
    assert (moved["old_addresses"], moved["new_address"], moved["target_group_arn"]) == (
        [old_ip], new_ip, group_arn), moved


# --- 6. repeated and racing events ---------------------------------------------------------------------


def test_the_same_tag_event_twice_provisions_once(aws: Aws, driver: Any, started: dict[str, Any]) -> None:
    identifier, network = "payments-db", started["network"]
    arns = driver.new_executions("provision", identifier, started["known"]["provision"], count=2)
    assert len(arns) == 2, arns
    executions = [driver.run_to_end(arn) for arn in arns]
    paths = [driver.states_entered(arn) for arn in arns]
    inventory = driver.inventory(identifier, network.security_group_id)
    report(f"duplicate tag events ({identifier}): {[e['status'] for e in executions]}, "
           f"second execution: {'waited for its turn, then ' if 'WaitForTurn' in paths[1] else ''}"
           f"{'NothingToDo' if 'NothingToDo' in paths[1] else paths[1][-1]}; {inventory.summary()}")

    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"], [why(e) for e in executions]
    assert [p[-1] for p in paths] == ["Provisioned", "Provisioned"], paths
    # Whichever took the turn first ran alone: the other went only after the first released it.
    first, second = sorted((turn_span(driver, arn) for arn in arns), key=lambda span: span[0])
    assert second[0] >= first[1], f"turns overlap: {first} and {second}"
    assert any("WaitForTurn" in p for p in paths), paths
    assert_one_set(inventory)
    services = {json.loads(e["output"])["endpoint_service_name"] for e in executions if "Provisioned" in
                driver.states_entered(e["executionArn"])}
    assert services == {inventory["endpoint_services"][0]["ServiceName"]}


def test_untag_racing_the_tag_ends_with_nothing(aws: Aws, driver: Any, started: dict[str, Any]) -> None:
    identifier, network = "audit-db", started["network"]
    [provision_arn] = driver.new_executions("provision", identifier, started["known"]["provision"])
    [deprovision_arn] = driver.new_executions("deprovision", identifier, started["known"]["deprovision"])
    provision = driver.run_to_end(provision_arn)
    deprovision = driver.run_to_end(deprovision_arn)
    inventory = driver.inventory(identifier, network.security_group_id)
    report(f"tag then untag at once ({identifier}): provision {provision['status']} via "
           f"{driver.states_entered(provision_arn)[-1]}, deprovision {deprovision['status']} via "
           f"{'WaitForTurn, ' if 'WaitForTurn' in driver.states_entered(deprovision_arn) else ''}"
           f"{driver.states_entered(deprovision_arn)[-1]}; {inventory.summary()}")

    assert provision["status"] == "SUCCEEDED", why(provision)
    assert deprovision["status"] == "SUCCEEDED", why(deprovision)
    assert inventory.empty(), inventory.summary()
    tags = driver.instance_tags(identifier)
    assert scenario.OPT_IN_TAG not in tags and not product_tags(tags), tags
