"""Aurora MySQL and Multi-AZ DB clusters: endpoint names, members in the cluster's subnet group
with an IP each, the writer and reader endpoints in DNS, FailoverDBCluster moving the writer."""

from __future__ import annotations

import ipaddress
import re

from test_dns import query
from test_rds import network_with_group, rds_enis

THREE_ZONES = (("10.20.1.0/24", "us-east-1a"), ("10.20.2.0/24", "us-east-1b"), ("10.20.3.0/24", "us-east-1c"))


def aurora(aws, identifier: str = "orders", members: int = 2, **extra) -> tuple[dict, dict]:
    rds = aws("rds")
    net = network_with_group(aws, subnets=THREE_ZONES)
    cluster = rds.create_db_cluster(
        DBClusterIdentifier=identifier, Engine="aurora-mysql", MasterUsername="admin",
        MasterUserPassword="password123", DBSubnetGroupName=net["group"], **extra)["DBCluster"]
    for number, zone in zip(range(1, members + 1), ("us-east-1a", "us-east-1b", "us-east-1c")):
        rds.create_db_instance(DBInstanceIdentifier=f"{identifier}-{number}", DBClusterIdentifier=identifier,
                               Engine="aurora-mysql", DBInstanceClass="db.r6g.large", AvailabilityZone=zone)
    return cluster, net


def describe(rds, identifier: str) -> dict:
    return rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]


def writer_of(cluster: dict) -> str:
    [writer] = [m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"] if m["IsClusterWriter"]]
    return writer


def ip_of(rds, identifier: str, emulator) -> str:
    [ip] = query(emulator.dns_port, rds.describe_db_instances(DBInstanceIdentifier=identifier)
                 ["DBInstances"][0]["Endpoint"]["Address"])["answers"]
    return ip


def test_cluster_endpoints_carry_the_accounts_label(aws):
    cluster, _ = aurora(aws, members=1)
    instance = aws("rds").describe_db_instances(DBInstanceIdentifier="orders-1")["DBInstances"][0]
    label = re.match(r"^orders-1\.([a-z][a-z0-9]{11})\.us-east-1\.rds\.amazonaws\.com$",
                     instance["Endpoint"]["Address"]).group(1)
    assert cluster["Endpoint"] == f"orders.cluster-{label}.us-east-1.rds.amazonaws.com"
    assert cluster["ReaderEndpoint"] == f"orders.cluster-ro-{label}.us-east-1.rds.amazonaws.com"


def test_cluster_without_groups_gets_its_vpcs_default_group(aws):
    cluster, net = aurora(aws, members=0)
    [default] = aws("ec2").describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [net["vpc"]]}, {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == [default["GroupId"]]


def test_members_are_in_the_clusters_subnet_group_with_its_groups_and_an_ip_each(aws):
    ec2, rds = aws("ec2"), aws("rds")
    _, net = aurora(aws, VpcSecurityGroupIds=[])
    rds.modify_db_cluster(DBClusterIdentifier="orders", VpcSecurityGroupIds=[net["sg"]])
    rds.create_db_instance(DBInstanceIdentifier="orders-3", DBClusterIdentifier="orders", Engine="aurora-mysql",
                           DBInstanceClass="db.r6g.large", AvailabilityZone="us-east-1c")
    member = rds.describe_db_instances(DBInstanceIdentifier="orders-3")["DBInstances"][0]
    assert member["DBSubnetGroup"]["DBSubnetGroupName"] == net["group"]
    assert member["DBSubnetGroup"]["VpcId"] == net["vpc"]
    [eni] = [e for e in rds_enis(ec2, net["vpc"]) if e["AvailabilityZone"] == "us-east-1c"]
    assert ipaddress.ip_address(eni["PrivateIpAddress"]) in ipaddress.ip_network("10.20.3.0/24")
    assert [g["GroupId"] for g in eni["Groups"]] == [net["sg"]]
    assert len({e["PrivateIpAddress"] for e in rds_enis(ec2, net["vpc"])}) == 3


def test_writer_endpoint_resolves_to_the_writer_and_follows_a_failover(aws, emulator):
    rds = aws("rds")
    aurora(aws)
    cluster = describe(rds, "orders")
    old_writer = writer_of(cluster)
    [reader] = [m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"] if not m["IsClusterWriter"]]
    assert query(emulator.dns_port, cluster["Endpoint"])["answers"] == [ip_of(rds, old_writer, emulator)]
    assert query(emulator.dns_port, cluster["ReaderEndpoint"])["answers"] == [ip_of(rds, reader, emulator)]

    rds.failover_db_cluster(DBClusterIdentifier="orders")
    after = describe(rds, "orders")
    assert writer_of(after) == reader
    assert query(emulator.dns_port, cluster["Endpoint"])["answers"] == [ip_of(rds, reader, emulator)]
    assert query(emulator.dns_port, cluster["ReaderEndpoint"])["answers"] == [ip_of(rds, old_writer, emulator)]


def test_reader_endpoint_of_a_cluster_without_readers_is_the_writer(aws, emulator):
    rds = aws("rds")
    cluster, _ = aurora(aws, members=1)
    assert query(emulator.dns_port, cluster["ReaderEndpoint"])["answers"] == [ip_of(rds, "orders-1", emulator)]


def test_cluster_endpoints_of_a_cluster_without_members_or_deleted_do_not_resolve(aws, emulator):
    rds = aws("rds")
    cluster, _ = aurora(aws, members=0)
    assert query(emulator.dns_port, cluster["Endpoint"])["answers"] == []
    rds.delete_db_cluster(DBClusterIdentifier="orders", SkipFinalSnapshot=True)
    assert query(emulator.dns_port, cluster["Endpoint"])["rcode"] == 3


def test_multi_az_db_cluster_is_created_with_three_members_in_three_zones(aws, emulator):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws, subnets=THREE_ZONES)
    rds.create_db_cluster(DBClusterIdentifier="maz", Engine="mysql", DBClusterInstanceClass="db.m6gd.large",
                          StorageType="io1", Iops=1000, AllocatedStorage=100, MasterUsername="admin",
                          MasterUserPassword="password123", DBSubnetGroupName=net["group"],
                          VpcSecurityGroupIds=[net["sg"]])
    cluster = describe(rds, "maz")
    members = sorted(m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"])
    assert members == ["maz-instance-1", "maz-instance-2", "maz-instance-3"]
    zones = {e["AvailabilityZone"] for e in rds_enis(ec2, net["vpc"])}
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1c"}
    assert query(emulator.dns_port, cluster["Endpoint"])["answers"] == [ip_of(rds, writer_of(cluster), emulator)]
