"""An account quota reached during provisioning: the load balancer step is refused
TooManyLoadBalancers (the emulator enforces AWS's default quotas, here lowered to what the account
already has); the execution fails QuotaExceeded, naming the quota and how to raise it, and the
rollback leaves nothing behind."""

from __future__ import annotations

from typing import Any, Callable

from local_stack import scenario
from local_stack.stack import control

Aws = Callable[[str], Any]


def test_a_quota_reached_fails_with_quota_exceeded_naming_it_and_leaves_nothing(
        aws: Aws, stack: dict[str, Any], driver: Any) -> None:
    network = scenario.create_network(aws, "quota", "10.53")
    identifier = "quota-db"
    db = scenario.create_database(aws, network, identifier)
    balancers = [b for page in aws("elbv2").get_paginator("describe_load_balancers").paginate()
                 for b in page["LoadBalancers"] if b["Type"] == "network"]
    endpoint = stack["endpoint"]
    assert control.route(endpoint, "/_emulator/quotas", "POST", {"network-load-balancers": len(balancers)})[0] == 200
    try:
        arn, execution = driver.opt_in_and_follow(db["DBInstanceArn"], identifier)
    finally:
        assert control.route(endpoint, "/_emulator/quotas", "DELETE")[0] == 200
    inventory = driver.inventory(identifier, network.security_group_id)
    print(f"E2E: quota reached ({identifier}): {execution['status']} {execution.get('error')}: "
          f"{execution.get('cause', '')[:200]}; after rollback {inventory.summary()}", flush=True)

    assert execution["status"] == "FAILED"
    assert execution["error"] == "QuotaExceeded", execution.get("error")
    assert "Network Load Balancers per Region" in execution["cause"], execution["cause"]
    assert "Service Quotas console (Elastic Load Balancing" in execution["cause"], execution["cause"]
    assert "TooManyLoadBalancers" in execution["cause"]
    assert driver.states_entered(arn)[-6:] == ["CreateLoadBalancer", "RollBack", "ReleaseTurn", "ReleaseDatabaseTurn", "HowItEnded",
                                               "ProvisioningFailed"]
    assert inventory.empty(), inventory.summary()
