"""A zone TiDB Cloud uses that the database's VPC gains later is added to the load balancer when
the instance is provisioned again (SetSubnets with every current subnet plus the new one).

    .venv/bin/python -m pytest -q tests/e2e/test_zone_added.py
"""

from __future__ import annotations

from typing import Any, Callable

from local_stack import scenario

Aws = Callable[[str], Any]


def _balancer_zones(aws: Aws, driver: Any, identifier: str) -> list[str]:
    [balancer] = driver.inventory(identifier)["load_balancers"]
    return sorted(z["ZoneName"] for z in balancer["AvailabilityZones"])


def test_a_rerun_adds_a_zone_the_vpc_gained(aws: Aws, driver: Any) -> None:
    network = scenario.create_network(aws, "growing", "10.34")
    identifier = "growing-db"
    db = scenario.create_database(aws, network, identifier)
    known = driver.known("provision")
    scenario.opt_in(aws, db["DBInstanceArn"])
    [arn] = driver.new_executions("provision", identifier, known)
    first = driver.run_to_end(arn)
    assert first["status"] == "SUCCEEDED", f"{first.get('error')}: {first.get('cause')}"
    # TiDB Cloud's zones here are use1-az1, az2 and az4; the VPC had no subnet in az4 (us-east-1d).
    assert _balancer_zones(aws, driver, identifier) == ["us-east-1a", "us-east-1b", "us-east-1c"]

    aws("ec2").create_subnet(VpcId=network.vpc_id, CidrBlock="10.34.4.0/24", AvailabilityZone="us-east-1d")
    again = driver.run_to_end(driver.start("provision", identifier))
    assert again["status"] == "SUCCEEDED", f"{again.get('error')}: {again.get('cause')}"
    assert _balancer_zones(aws, driver, identifier) == ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
