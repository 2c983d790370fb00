"""The load balancer's zones and the database target's health on the local stack: a database in a
zone TiDB Cloud does not use is covered (the load balancer is enabled in the database's zone) and
provisioning reports success only once the load balancer finds the target healthy; a target whose
health checks cannot pass fails the provisioning with TargetNotHealthy and rolls everything back.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from local_stack import scenario

Aws = Callable[[str], Any]


def report(line: str) -> None:
    print(f"E2E: {line}", flush=True)


def why(execution: dict[str, Any]) -> str:
    return f"{execution['status']}: {execution.get('error')}: {execution.get('cause')}"


@pytest.fixture(scope="module")
def zones_network(aws: Aws) -> scenario.Network:
    return scenario.create_network(aws, "zones", "10.33")


def _target_health(aws: Aws, target_group_arn: str) -> list[tuple[str, str, str | None]]:
    described = aws("elbv2").describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
    return [(d["Target"]["Id"], d["TargetHealth"]["State"], d["TargetHealth"].get("Reason")) for d in described]


def test_a_database_outside_tidb_clouds_zones_is_reached_and_healthy(aws: Aws, driver: Any,
                                                                      zones_network: scenario.Network) -> None:
    """The instance lands in us-east-1a (use1-az6); TiDB Cloud uses use1-az1/az2/az4 (1b, 1c). The
    load balancer must be enabled in 1a as well, and the workflow waits for the target's health."""
    identifier = "zones-db"
    db = scenario.create_database(aws, zones_network, identifier)
    db_zone = aws("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["AvailabilityZone"]
    assert db_zone == "us-east-1a"
    known = driver.known("provision")
    # Only the workflow reads the target's health until it has its answer (see schedules_paused).
    with driver.schedules_paused():
        scenario.opt_in(aws, db["DBInstanceArn"])
        [arn] = driver.new_executions("provision", identifier, known)
        execution = driver.run_to_end(arn)
    assert execution["status"] == "SUCCEEDED", why(execution)

    inventory = driver.inventory(identifier, zones_network.security_group_id)
    [balancer] = inventory["load_balancers"]
    zones = sorted(z["ZoneName"] for z in balancer["AvailabilityZones"])
    assert zones == ["us-east-1a", "us-east-1b", "us-east-1c"], zones
    [group] = inventory["target_groups"]
    [(ip, state, reason)] = _target_health(aws, group["TargetGroupArn"])
    assert state == "healthy", (ip, state, reason)

    # The target was `initial` first: the workflow polled it again after a wait, and only then
    # went on to the endpoint service.
    entered = driver.states_entered(arn)
    checks = [i for i, name in enumerate(entered) if name == "CheckTargetHealth"]
    assert len(checks) >= 2 and "WaitForTargetHealth" in entered[checks[0]:checks[-1]], entered
    assert entered.index("CreateEndpointService") > checks[-1], entered
    output = json.loads(execution["output"])
    assert output["target_health"]["state"] == "healthy"
    roles = {s["availability_zone"]: (s["shared_with_tidb_cloud"], s["database_zone"]) for s in output["subnets"]}
    assert roles == {"us-east-1a": (False, True), "us-east-1b": (True, True), "us-east-1c": (True, True)}, roles
    report(f"zones ({identifier} in {db_zone}): load balancer in {', '.join(zones)}; target {ip} {state} after "
           f"{len(checks)} health polls")


def test_a_target_the_health_checks_cannot_reach_fails_and_rolls_back(aws: Aws, driver: Any,
                                                                       zones_network: scenario.Network) -> None:
    """The load balancer's security group loses its egress rule while the workflow provisions
    (as a clean-up tool might strip it): its health checks cannot reach the database, so the
    provisioning fails with TargetNotHealthy, AWS's reason and what to check, and rolls back.
    The rule is removed as soon as it appears; the workflow's first health answer is `initial` and
    its next poll comes after a 10 s Wait, long before which the removal has landed."""
    identifier = "stripped-db"
    ec2 = aws("ec2")
    db = scenario.create_database(aws, zones_network, identifier)
    known = driver.known("provision")
    scenario.opt_in(aws, db["DBInstanceArn"])
    [arn] = driver.new_executions("provision", identifier, known)
    ours = [{"Name": "tag:tidb-privatelink:managed-by", "Values": [driver.name]},
            {"Name": "tag:tidb-privatelink:db-instance", "Values": [identifier]}]
    stripped = None
    execution = None
    for event in scenario.follow(aws, arn, timeout=300, poll=0.2):
        if event["type"] == "__end__":
            execution = event["execution"]
            break
        if stripped is None:
            for group in ec2.describe_security_groups(Filters=ours)["SecurityGroups"]:
                rules = [p for p in group["IpPermissionsEgress"] if p.get("FromPort") == 3306]
                if rules:
                    ec2.revoke_security_group_egress(GroupId=group["GroupId"], IpPermissions=rules)
                    stripped = group["GroupId"]
    assert stripped is not None and execution is not None
    assert execution["status"] == "FAILED", why(execution)
    assert execution["error"] == "TargetNotHealthy", why(execution)
    for part in ("Target.FailedHealthChecks", "unhealthy", stripped, "outbound TCP 3306"):
        assert part in execution["cause"], why(execution)
    entered = driver.states_entered(arn)
    assert entered[-6:] == ["CheckTargetHealth", "RollBack", "ReleaseTurn", "ReleaseDatabaseTurn", "HowItEnded", "ProvisioningFailed"], entered
    assert "CreateEndpointService" not in entered, entered
    after = driver.inventory(identifier, zones_network.security_group_id, {stripped})
    assert after.empty(), after.summary()
    report(f"unreachable target ({identifier}): {execution['error']}; rolled back, {after.summary()} left")


def test_a_rerun_adds_a_zone_the_load_balancer_lacks(aws: Aws, driver: Any, zones_network: scenario.Network) -> None:
    """A subnet added later in a zone TiDB Cloud uses (us-east-1d, use1-az4): running the workflow
    again enables the zone on the existing load balancer (SetSubnets with every current subnet plus
    the new one), under the stack's own least-privilege grant."""
    identifier = "grow-db"
    db = scenario.create_database(aws, zones_network, identifier)
    arn, provisioned = driver.opt_in_and_follow(db["DBInstanceArn"], identifier)
    assert provisioned["status"] == "SUCCEEDED", provisioned

    def zones() -> list[str]:
        [balancer] = driver.inventory(identifier, zones_network.security_group_id)["load_balancers"]
        return sorted(z["ZoneName"] for z in balancer["AvailabilityZones"])

    assert zones() == ["us-east-1a", "us-east-1b", "us-east-1c"]
    aws("ec2").create_subnet(VpcId=zones_network.vpc_id, CidrBlock="10.33.4.0/24", AvailabilityZone="us-east-1d")
    rerun = driver.run_to_end(driver.start("provision", identifier))
    assert rerun["status"] == "SUCCEEDED", why(rerun)
    assert zones() == ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    report(f"rerun ({identifier}): the load balancer now in {', '.join(zones())}")

    known = driver.known("deprovision")
    aws("rds").remove_tags_from_resource(ResourceName=db["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])
    [teardown] = driver.new_executions("deprovision", identifier, known)
    assert driver.run_to_end(teardown)["status"] == "SUCCEEDED"
