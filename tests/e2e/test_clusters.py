"""An Aurora MySQL cluster, zero-touch: tagging the cluster ends with TiDB Cloud's connection ACTIVE
(the second local stack, with an API key and the TiDB Cloud double) and the target at the writer;
a forced cluster failover moves the target to the new writer; untagging leaves nothing. A member
instance tagged on its own is refused by name. On the first stack: a cluster created with the tag
is provisioned once it has a writer, and deleting it leaves nothing.

Timings are printed with an ``E2E:`` prefix (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from local_stack import scenario
from test_lifecycle import database_ip, report, targets, why

Aws = Callable[[str], Any]
CLUSTER = "ledger"
KEY = f"cluster:{CLUSTER}"


def create_cluster(aws: Aws, network: scenario.Network, identifier: str = CLUSTER,
                   tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """An Aurora MySQL cluster in the network's DB subnet group with its security group, a writer
    in the first zone and a reader in the second."""
    rds = aws("rds")
    cluster = rds.create_db_cluster(
        DBClusterIdentifier=identifier, Engine="aurora-mysql", MasterUsername="admin",
        MasterUserPassword="local-only-password", DBSubnetGroupName=network.subnet_group,
        VpcSecurityGroupIds=[network.security_group_id], Tags=tags or [])["DBCluster"]
    for number, zone in enumerate(scenario.ZONES[:2], start=1):
        rds.create_db_instance(DBInstanceIdentifier=f"{identifier}-{number}", DBClusterIdentifier=identifier,
                               Engine="aurora-mysql", DBInstanceClass="db.r6g.large", AvailabilityZone=zone)
    return cluster


def writer(aws: Aws) -> str:
    cluster = aws("rds").describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][0]
    [name] = [m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"] if m["IsClusterWriter"]]
    return name


def test_a_tagged_cluster_is_linked_at_its_writer_follows_a_failover_and_is_torn_down(
        tidb_cloud: dict[str, Any], tidb_aws: Aws, tidb_driver: Any, tidb_network: scenario.Network) -> None:
    stack, double, driver, aws, network = tidb_cloud["stack"], tidb_cloud["double"], tidb_driver, tidb_aws, tidb_network
    cluster = create_cluster(aws, network)

    # A member tagged on its own is refused, naming the cluster, and leaves nothing.
    member = aws("rds").describe_db_instances(DBInstanceIdentifier=f"{CLUSTER}-2")["DBInstances"][0]
    known = driver.known("provision")
    scenario.opt_in(aws, member["DBInstanceArn"])
    [refused_arn] = driver.new_executions("provision", f"{CLUSTER}-2", known)
    refused = driver.run_to_end(refused_arn)
    assert (refused["status"], refused.get("error")) == ("FAILED", "DatabaseIsClusterMember"), why(refused)
    assert "tag the cluster instead" in refused["cause"]
    assert driver.inventory(f"{CLUSTER}-2", network.security_group_id).empty()
    aws("rds").remove_tags_from_resource(ResourceName=member["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])

    # Tag the cluster: TiDB Cloud's connection ACTIVE, the target the writer's address.
    known = driver.known("provision")
    started_at = time.monotonic()
    scenario.opt_in(aws, cluster["DBClusterArn"])
    [arn] = driver.new_executions("provision", KEY, known)
    execution = driver.run_to_end(arn)
    provisioned_in = time.monotonic() - started_at
    assert execution["status"] == "SUCCEEDED", why(execution)
    output = json.loads(execution["output"])
    [connection] = [c for c in double.state()["connections"] if c["id"] == output["tidb_cloud_connection_id"]]
    assert connection["state"] == "ACTIVE" and connection["service_name"] == output["endpoint_service_name"]
    old_writer = writer(aws)
    old_ip = database_ip(aws, stack, network.vpc_id, old_writer)
    inventory = driver.inventory(KEY, network.security_group_id)
    [group] = inventory["target_groups"]
    assert targets(aws, group["TargetGroupArn"]) == {old_ip}
    assert output["target_health"]["target"] == f"{old_ip}:3306"
    tags = {t["Key"]: t["Value"] for t in
            aws("rds").describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][0]["TagList"]}
    assert tags["tidb-privatelink:endpoint-service"] == output["endpoint_service_name"]

    # Fail over: the cluster events reach sync-targets, which registers the new writer first.
    failed_over_at = time.monotonic()
    aws("rds").failover_db_cluster(DBClusterIdentifier=CLUSTER)
    new_writer = writer(aws)
    new_ip = database_ip(aws, stack, network.vpc_id, new_writer)
    assert new_writer != old_writer and new_ip != old_ip
    group_arn = group["TargetGroupArn"]

    def wait_for(done: Callable[[set[str]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(targets(aws, group_arn)):
                return True
            time.sleep(0.2)
        return False

    assert wait_for(lambda now: new_ip in now, 60), f"the new writer was never registered: {targets(aws, group_arn)}"
    registered_in = time.monotonic() - failed_over_at
    if not wait_for(lambda now: now == {new_ip}, 5):
        # The old writer goes once the new target is healthy: on the backstop schedule's next run,
        # invoked here at once with the schedule's event.
        function = next(f for f in stack["functions"] if f["logical_id"] == "SyncTargetsFunction")
        answer = aws("lambda").invoke(FunctionName=function["name"],
                                      Payload=json.dumps({"detail-type": "Scheduled Event", "detail": {}}).encode())
        assert "FunctionError" not in answer, answer["Payload"].read()
    assert wait_for(lambda now: now == {new_ip}, 30), f"the old writer stayed: {targets(aws, group_arn)}"
    exact_in = time.monotonic() - failed_over_at

    # Untag: everything goes, TiDB Cloud's connection first.
    known = driver.known("deprovision")
    aws("rds").remove_tags_from_resource(ResourceName=cluster["DBClusterArn"], TagKeys=[scenario.OPT_IN_TAG])
    [teardown_arn] = driver.new_executions("deprovision", KEY, known)
    teardown = driver.run_to_end(teardown_arn)
    assert teardown["status"] == "SUCCEEDED", why(teardown)
    after = driver.inventory(KEY, network.security_group_id, {g["GroupId"] for g in inventory["security_groups"]})
    assert after.empty(), after.summary()
    assert connection["id"] not in {c["id"] for c in double.state()["connections"]}
    tags = {t["Key"] for t in aws("rds").describe_db_clusters(DBClusterIdentifier=CLUSTER)["DBClusters"][0]["TagList"]}
    assert not any(key.startswith("tidb-privatelink") for key in tags), tags
    report(f"cluster {CLUSTER}: tag -> TiDB Cloud ACTIVE in {provisioned_in:.1f} s; failover {old_writer} ({old_ip}) "
           f"-> {new_writer} ({new_ip}): new writer registered after {registered_in:.1f} s, the only target "
           f"after {exact_in:.1f} s; untag -> {after.summary()}")


def test_a_cluster_created_with_the_tag_is_provisioned_and_deleting_it_leaves_nothing(
        aws: Aws, driver: Any, network: scenario.Network) -> None:
    identifier = "audit"
    key = f"cluster:{identifier}"
    known = driver.known("provision")
    create_cluster(aws, network, identifier, tags=[{"Key": scenario.OPT_IN_TAG, "Value": "true"}])
    [arn] = driver.new_executions("provision", key, known)
    execution = driver.run_to_end(arn)
    assert execution["status"] == "SUCCEEDED", why(execution)
    inventory = driver.inventory(key, network.security_group_id)
    assert len(inventory["target_groups"]) == 1 and len(inventory["endpoint_services"]) == 1, inventory.summary()

    # RDS deletes a cluster only once its members are gone; their deletions are about no database
    # of ours, the cluster's tears its path down.
    rds = aws("rds")
    for number in (1, 2):
        rds.delete_db_instance(DBInstanceIdentifier=f"{identifier}-{number}", SkipFinalSnapshot=True)
    known = driver.known("deprovision")
    rds.delete_db_cluster(DBClusterIdentifier=identifier, SkipFinalSnapshot=True)
    [teardown_arn] = driver.new_executions("deprovision", key, known)
    teardown = driver.run_to_end(teardown_arn)
    assert teardown["status"] == "SUCCEEDED", why(teardown)
    after = driver.inventory(key, network.security_group_id, {g["GroupId"] for g in inventory["security_groups"]})
    assert after.empty(), after.summary()
    report(f"cluster {identifier} created with the tag: provisioned in "
           f"{(execution['stopDate'] - execution['startDate']).total_seconds():.1f} s; deleted -> {after.summary()}")
