"""LoadBalancerSharing=per-vpc at its edges, on the ``per_vpc`` stack: a DB cluster shares its
VPC's load balancer with instances (its turn is its VPC's, read through its DB subnet group); a
database with a security group of its own takes that group's rules with it when it leaves, the
others' stay; another account's request to the shared service is rejected and told with its
VPC; a database that is deleted is torn down through its VPC's turn (found from its
target group, the database being gone); the last one leaves nothing.
"""

from __future__ import annotations

from typing import Any

from local_stack import scenario
from test_acceptor import third_account_allowed_by_hand
from test_clusters import create_cluster
from test_lifecycle import why

CLUSTER_KEY = "cluster:edges-ledger"


def run(per_vpc: dict[str, Any], workflow: str, identifier: str, change: Any) -> None:
    """Makes ``change`` (a tag or a deletion) and follows the execution it starts for ``identifier``."""
    driver = per_vpc["driver"]
    known = driver.known(workflow)
    change()
    [arn] = driver.new_executions(workflow, identifier, known)
    execution = driver.run_to_end(arn)
    assert execution["status"] == "SUCCEEDED", f"{workflow} of {identifier}: {why(execution)}"


def group_pairs(aws: Any, group_id: str, direction: str) -> set[str]:
    """The groups that ``group_id``'s rules (``IpPermissions`` or ``IpPermissionsEgress``) name."""
    [group] = aws("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return {pair["GroupId"] for rule in group[direction] for pair in rule.get("UserIdGroupPairs", [])}


def test_a_cluster_a_database_with_its_own_group_and_a_deleted_one_share_and_leave_cleanly(
        per_vpc: dict[str, Any]) -> None:
    aws, driver, stack = per_vpc["aws"], per_vpc["driver"], per_vpc["stack"]["stack_name"]
    cluster_id = per_vpc["double"].cluster
    network = scenario.create_network(aws, "edges", "10.37")
    rds = aws("rds")
    own_group = aws("ec2").create_security_group(GroupName="edges-reports", Description="reports MySQL",
                                                 VpcId=network.vpc_id)["GroupId"]
    cluster = create_cluster(aws, network, "edges-ledger")
    orders = scenario.create_database(aws, network, "edges-orders")
    reports = scenario.create_database(aws, network, "edges-reports")
    rds.modify_db_instance(DBInstanceIdentifier="edges-reports", VpcSecurityGroupIds=[own_group], ApplyImmediately=True)
    for key, arn in ((CLUSTER_KEY, cluster["DBClusterArn"]), ("edges-orders", orders["DBInstanceArn"]),
                     ("edges-reports", reports["DBInstanceArn"])):
        run(per_vpc, "provision", key, lambda arn=arn: scenario.opt_in(aws, arn, cluster_id))
    shared = driver.inventory(scenario.vpc_key(network.vpc_id))
    assert (len(shared["load_balancers"]), len(shared["endpoint_services"])) == (1, 1), shared.summary()
    [nlb_group] = [g["GroupId"] for g in shared["security_groups"]]
    assert group_pairs(aws, nlb_group, "IpPermissionsEgress") == {network.security_group_id, own_group}

    # Another account, allowed on the shared service by hand, asks to connect: rejected, and the
    # notification names the VPC, since the service is not one database's.
    [service] = shared["endpoint_services"]
    third = third_account_allowed_by_hand(aws, per_vpc["stack"], service["ServiceId"], "10.95")
    endpoint = third.request(service["ServiceName"])
    assert third.wait(endpoint, "rejected") == "rejected", "the third account's endpoint was not rejected"
    told = driver.told(network.vpc_id, "foreign-connection-rejected", about="vpc_id")
    assert [(t["vpc_endpoint_id"], t["service_id"], t["db_instance_identifier"]) for t in told] == [
        (endpoint, service["ServiceId"], None)], told

    # The database with a group of its own leaves: that group's rules go, the shared group's stay.
    run(per_vpc, "deprovision", "edges-reports", lambda: rds.remove_tags_from_resource(
        ResourceName=reports["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG]))
    assert group_pairs(aws, nlb_group, "IpPermissionsEgress") == {network.security_group_id}
    assert nlb_group not in group_pairs(aws, own_group, "IpPermissions")
    assert nlb_group in group_pairs(aws, network.security_group_id, "IpPermissions")

    # A deleted database is torn down in its VPC's turn: its listener and target group go.
    run(per_vpc, "deprovision", "edges-orders",
        lambda: rds.delete_db_instance(DBInstanceIdentifier="edges-orders", SkipFinalSnapshot=True))
    assert driver.inventory("edges-orders").empty(), driver.inventory("edges-orders").summary()
    assert len(driver.inventory(scenario.vpc_key(network.vpc_id))["load_balancers"]) == 1

    # The cluster, last, takes the shared parts with it.
    run(per_vpc, "deprovision", CLUSTER_KEY, lambda: rds.remove_tags_from_resource(
        ResourceName=cluster["DBClusterArn"], TagKeys=[scenario.OPT_IN_TAG]))
    left = scenario.inventory(aws, stack, [scenario.vpc_key(network.vpc_id), CLUSTER_KEY, "edges-orders",
                                           "edges-reports"], network.security_group_id, {nlb_group})
    assert left.empty(), left.summary()
