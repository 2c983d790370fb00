"""RDS instances get an ENI, a private IP inside their subnet and an
account-specific endpoint name; failover moves the IP."""

from __future__ import annotations

import ipaddress
import re

import pytest
from botocore.exceptions import ClientError
from conftest import make_network


def create_db(rds, identifier: str, net: dict | None = None, **extra):
    kwargs = dict(
        DBInstanceIdentifier=identifier, DBInstanceClass="db.t3.micro", Engine="mysql",
        MasterUsername="admin", MasterUserPassword="password123", AllocatedStorage=20,
    )
    if net is not None:
        kwargs.update(DBSubnetGroupName=net["group"], VpcSecurityGroupIds=[net["sg"]])
    kwargs.update(extra)
    return rds.create_db_instance(**kwargs)["DBInstance"]


def network_with_group(aws, subnets=None) -> dict:
    ec2, rds = aws("ec2"), aws("rds")
    net = make_network(ec2) if subnets is None else make_network(ec2, subnets=subnets)
    rds.create_db_subnet_group(
        DBSubnetGroupName="grp", DBSubnetGroupDescription="t", SubnetIds=net["subnets"]
    )
    net["group"] = "grp"
    return net


def rds_enis(ec2, vpc_id: str) -> list[dict]:
    return ec2.describe_network_interfaces(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "description", "Values": ["RDSNetworkInterface"]}]
    )["NetworkInterfaces"]


def test_instance_gets_eni_in_its_subnet_with_groups(aws):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws)
    db = create_db(rds, "orders", net, AvailabilityZone="us-east-1b")

    [eni] = rds_enis(ec2, net["vpc"])
    assert eni["SubnetId"] == net["subnets"][1]  # the group's subnet in us-east-1b
    assert eni["AvailabilityZone"] == "us-east-1b" == db["AvailabilityZone"]
    assert ipaddress.ip_address(eni["PrivateIpAddress"]) in ipaddress.ip_network("10.20.2.0/24")
    assert [g["GroupId"] for g in eni["Groups"]] == [net["sg"]]
    assert eni["RequesterManaged"] is True
    assert eni["Description"] == "RDSNetworkInterface"


def test_ips_are_unique_and_inside_a_small_subnet(aws):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws, subnets=(("10.20.1.0/28", "us-east-1a"), ("10.20.1.16/28", "us-east-1b")))
    for i in range(8):
        create_db(rds, f"db{i}", net, AvailabilityZone="us-east-1a")
    ips = [e["PrivateIpAddress"] for e in rds_enis(ec2, net["vpc"])]
    assert len(ips) == 8 and len(set(ips)) == 8
    subnet = ipaddress.ip_network("10.20.1.0/28")
    for ip in map(ipaddress.ip_address, ips):
        assert ip in subnet
        # AWS reserves the first four addresses and the last one.
        assert int(ip) - int(subnet.network_address) >= 4 and ip != subnet.broadcast_address


def test_endpoint_address_is_account_specific(aws, other_aws):
    a = create_db(aws("rds"), "shared-name")
    b = create_db(other_aws("rds"), "shared-name")
    pattern = re.compile(r"^shared-name\.([a-z][a-z0-9]{11})\.us-east-1\.rds\.amazonaws\.com$")
    label_a = pattern.match(a["Endpoint"]["Address"]).group(1)
    label_b = pattern.match(b["Endpoint"]["Address"]).group(1)
    assert label_a != label_b
    # Stable per account: a second instance shares the label.
    c = create_db(aws("rds"), "another")
    assert c["Endpoint"]["Address"] == f"another.{label_a}.us-east-1.rds.amazonaws.com"


def test_instance_without_subnet_group_lands_in_default_vpc(aws):
    ec2 = aws("ec2")
    create_db(aws("rds"), "plain")
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    [eni] = rds_enis(ec2, default_vpc["VpcId"])
    subnet = ec2.describe_subnets(SubnetIds=[eni["SubnetId"]])["Subnets"][0]
    assert ipaddress.ip_address(eni["PrivateIpAddress"]) in ipaddress.ip_network(subnet["CidrBlock"])


def test_delete_removes_the_eni(aws):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws)
    create_db(rds, "gone", net)
    assert len(rds_enis(ec2, net["vpc"])) == 1
    rds.delete_db_instance(DBInstanceIdentifier="gone", SkipFinalSnapshot=True)
    assert rds_enis(ec2, net["vpc"]) == []


def test_read_replica_gets_its_own_ip(aws):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws)
    create_db(rds, "primary", net)
    rds.create_db_instance_read_replica(DBInstanceIdentifier="replica", SourceDBInstanceIdentifier="primary")
    enis = rds_enis(ec2, net["vpc"])
    assert len({e["PrivateIpAddress"] for e in enis}) == 2


def test_force_failover_moves_ip_and_az(aws):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws)
    db = create_db(rds, "multi", net, MultiAZ=True, AvailabilityZone="us-east-1a")
    assert db["SecondaryAvailabilityZone"] == "us-east-1b"
    [before] = rds_enis(ec2, net["vpc"])

    after_db = rds.reboot_db_instance(DBInstanceIdentifier="multi", ForceFailover=True)["DBInstance"]

    [after] = rds_enis(ec2, net["vpc"])
    assert after["NetworkInterfaceId"] != before["NetworkInterfaceId"]
    assert after["PrivateIpAddress"] != before["PrivateIpAddress"]
    assert after["AvailabilityZone"] == "us-east-1b" == after_db["AvailabilityZone"]
    assert after_db["SecondaryAvailabilityZone"] == "us-east-1a"
    assert ipaddress.ip_address(after["PrivateIpAddress"]) in ipaddress.ip_network("10.20.2.0/24")


def test_force_failover_needs_multi_az(aws):
    rds = aws("rds")
    create_db(rds, "single")
    with pytest.raises(ClientError) as err:
        rds.reboot_db_instance(DBInstanceIdentifier="single", ForceFailover=True)
    assert err.value.response["Error"]["Code"] == "InvalidParameterCombination"
    # A plain reboot still works.
    assert rds.reboot_db_instance(DBInstanceIdentifier="single")["DBInstance"]["DBInstanceIdentifier"] == "single"


def test_group_in_use_by_the_instance_cannot_be_deleted(aws):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws)
    create_db(rds, "holder", net)
    with pytest.raises(ClientError) as err:
        ec2.delete_security_group(GroupId=net["sg"])
    assert err.value.response["Error"]["Code"] == "DependencyViolation"
    rds.delete_db_instance(DBInstanceIdentifier="holder", SkipFinalSnapshot=True)
    ec2.delete_security_group(GroupId=net["sg"])
    assert net["sg"] not in [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]]


def test_restored_instance_gets_its_own_eni(aws):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws)
    create_db(rds, "source", net)
    rds.create_db_snapshot(DBInstanceIdentifier="source", DBSnapshotIdentifier="snap")
    restored = rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="restored", DBSnapshotIdentifier="snap", DBSubnetGroupName="grp"
    )["DBInstance"]
    assert restored["Endpoint"]["Address"].startswith("restored.")
    assert len({e["PrivateIpAddress"] for e in rds_enis(ec2, net["vpc"])}) == 2


def test_parallel_creates_get_distinct_ips(aws):
    # cargo test runs tests in parallel against one emulator.
    from concurrent.futures import ThreadPoolExecutor

    ec2 = aws("ec2")
    net = network_with_group(aws, subnets=(("10.20.1.0/28", "us-east-1a"), ("10.20.1.16/28", "us-east-1b")))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: create_db(aws("rds"), f"par{i}", net, AvailabilityZone="us-east-1a"), range(10)))
    ips = [e["PrivateIpAddress"] for e in rds_enis(ec2, net["vpc"])]
    assert len(ips) == 10 and len(set(ips)) == 10


def test_no_groups_given_means_the_vpc_default_group(aws):
    ec2, rds = aws("ec2"), aws("rds")
    net = network_with_group(aws)
    db = create_db(rds, "defaults", DBSubnetGroupName="grp")
    default = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [net["vpc"]]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    [eni] = rds_enis(ec2, net["vpc"])
    assert [g["GroupId"] for g in eni["Groups"]] == [default]
    assert [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]] == [default]
