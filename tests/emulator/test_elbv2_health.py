"""ELBv2 target health: unused outside the load balancer's zones or without a
listener, initial after registration, then healthy or unhealthy as the health
check's path through the security groups allows (patches/elbv2_health.py)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from conftest import make_network
from test_elbv2 import THREE_ZONES, nlb, target_group
from test_rds import create_db, rds_enis


def set_initial_describes(emulator, count) -> None:
    body = json.dumps({"elbv2": {"target_initial_describes": count}}).encode()
    request = urllib.request.Request(f"{emulator.url}/moto-api/config", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()


@pytest.fixture
def no_initial(emulator):
    """Health verdicts at once (no `initial` answers), the default restored afterwards."""
    set_initial_describes(emulator, 0)
    yield
    set_initial_describes(emulator, 1)


class Setup:
    """A VPC in three zones, a database-like network interface in us-east-1a with its own
    security group, and a load balancer security group, with no rules between them yet."""

    def __init__(self, aws):
        self.ec2, self.elb = aws("ec2"), aws("elbv2")
        self.net = make_network(self.ec2, subnets=THREE_ZONES)
        self.a, self.b, self.c = self.net["subnets"]
        self.db_sg = self.ec2.create_security_group(GroupName="db", Description="db", VpcId=self.net["vpc"])["GroupId"]
        self.nlb_sg = self.net["sg"]
        # As the product's groups are: no egress until a rule allows it.
        self.ec2.revoke_security_group_egress(GroupId=self.nlb_sg, IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        self.eni = self.ec2.create_network_interface(SubnetId=self.a, Groups=[self.db_sg])["NetworkInterface"]
        self.ip = self.eni["PrivateIpAddress"]
        self.tg = target_group(self.elb, self.net)["TargetGroupArn"]

    def allow(self, egress=True, ingress=True, ingress_cidr=None):
        if egress:
            self.ec2.authorize_security_group_egress(GroupId=self.nlb_sg, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "UserIdGroupPairs": [{"GroupId": self.db_sg}]}])
        if ingress:
            self.ec2.authorize_security_group_ingress(GroupId=self.db_sg, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "UserIdGroupPairs": [{"GroupId": self.nlb_sg}]}])
        if ingress_cidr:
            self.ec2.authorize_security_group_ingress(GroupId=self.db_sg, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "IpRanges": [{"CidrIp": ingress_cidr}]}])

    def balancer(self, subnets, listener=True):
        arn = nlb(self.elb, self.net, Subnets=subnets)["LoadBalancerArn"]
        if listener:
            self.elb.create_listener(LoadBalancerArn=arn, Protocol="TCP", Port=3306,
                                     DefaultActions=[{"Type": "forward", "TargetGroupArn": self.tg}])
        return arn

    def register(self, ip=None):
        self.elb.register_targets(TargetGroupArn=self.tg, Targets=[{"Id": ip or self.ip, "Port": 3306}])

    def health(self, ip=None):
        described = self.elb.describe_target_health(TargetGroupArn=self.tg)["TargetHealthDescriptions"]
        [found] = [d["TargetHealth"] for d in described if d["Target"]["Id"] == (ip or self.ip)]
        return found.get("State"), found.get("Reason"), found.get("Description")


def test_a_target_group_without_a_listener_is_not_in_use(aws, no_initial):
    s = Setup(aws)
    s.allow()
    s.register()
    assert s.health() == ("unused", "Target.NotInUse",
                          "Target group is not configured to receive traffic from the load balancer")
    s.balancer([s.a, s.b], listener=False)
    assert s.health()[:2] == ("unused", "Target.NotInUse")


def test_a_target_outside_the_load_balancers_zones_is_not_in_use_until_its_zone_is_enabled(aws, no_initial):
    s = Setup(aws)
    s.allow()
    s.register()
    arn = s.balancer([s.b, s.c])  # the target is in us-east-1a
    s.elb.modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=[
        {"Key": "load_balancing.cross_zone.enabled", "Value": "true"}])
    assert s.health() == ("unused", "Target.NotInUse",
                          "Target is in an Availability Zone that is not enabled for the load balancer")
    s.elb.set_subnets(LoadBalancerArn=arn, Subnets=[s.b, s.c, s.a])
    assert s.health() == ("healthy", None, None)


@pytest.mark.parametrize("egress,ingress", [(False, True), (True, False)])
def test_a_health_check_blocked_by_a_security_group_fails(aws, no_initial, egress, ingress):
    s = Setup(aws)
    s.allow(egress=egress, ingress=ingress)
    s.register()
    s.balancer([s.a, s.b])
    assert s.health() == ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")


def test_health_follows_rule_changes_and_accepts_a_cidr_covering_the_load_balancer(aws, no_initial):
    s = Setup(aws)
    s.allow(ingress=False)
    s.register()
    s.balancer([s.a, s.b])
    assert s.health()[0] == "unhealthy"
    # A range that holds only one of the load balancer's subnets leaves the other zone's node out.
    s.allow(egress=False, ingress=False, ingress_cidr="10.20.1.0/24")
    assert s.health()[0] == "unhealthy"
    s.allow(egress=False, ingress=False, ingress_cidr="10.20.0.0/16")
    assert s.health() == ("healthy", None, None)


def test_an_address_nothing_holds_fails_its_health_checks(aws, no_initial):
    s = Setup(aws)
    s.allow()
    s.balancer([s.a, s.b])
    s.register("10.20.1.200")
    assert s.health("10.20.1.200") == ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")


def test_a_new_target_is_initial_before_its_verdict(aws):
    """By default one answer shows a new target `initial`; then its verdict."""
    s = Setup(aws)
    s.allow()
    s.balancer([s.a, s.b])
    s.register()
    assert s.health() == ("initial", "Elb.RegistrationInProgress", "Target registration is in progress")
    assert s.health() == ("healthy", None, None)


def test_initial_lasts_the_configured_number_of_answers_and_starts_again_with_a_new_zone(emulator, aws):
    set_initial_describes(emulator, 2)
    try:
        s = Setup(aws)
        s.allow()
        arn = s.balancer([s.b, s.c])
        s.register()
        assert s.health()[:2] == ("unused", "Target.NotInUse")
        s.elb.set_subnets(LoadBalancerArn=arn, Subnets=[s.b, s.c, s.a])
        assert [s.health() for _ in range(3)] == [
            ("initial", "Elb.RegistrationInProgress", "Target registration is in progress"),
            ("initial", "Elb.InitialHealthChecking", "Initial health checks in progress"),
            ("healthy", None, None),
        ]
    finally:
        set_initial_describes(emulator, 1)


def test_health_follows_a_database_failover(aws, no_initial):
    """The RDS instance's new address (another zone, a new network interface with the same groups) is
    healthy once registered; the old address, now held by nothing, fails its checks."""
    s = Setup(aws)
    rds = aws("rds")
    rds.create_db_subnet_group(DBSubnetGroupName="grp", DBSubnetGroupDescription="t", SubnetIds=[s.a, s.b])
    create_db(rds, "orders", {"group": "grp", "sg": s.db_sg}, MultiAZ=True, AvailabilityZone="us-east-1a")
    s.allow()
    s.balancer([s.a, s.b])
    [old] = [e["PrivateIpAddress"] for e in rds_enis(s.ec2, s.net["vpc"])]
    s.register(old)
    assert s.health(old) == ("healthy", None, None)
    rds.reboot_db_instance(DBInstanceIdentifier="orders", ForceFailover=True)
    [new] = [e["PrivateIpAddress"] for e in rds_enis(s.ec2, s.net["vpc"])]
    assert new != old
    s.register(new)
    assert s.health(new) == ("healthy", None, None)
    assert s.health(old) == ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")


def test_instance_targets_are_checked_through_their_interface(aws, no_initial):
    s = Setup(aws)
    s.allow()
    s.balancer([s.b, s.c])
    instance_tg = s.elb.create_target_group(Name="web", Protocol="TCP", Port=3306, VpcId=s.net["vpc"],
                                            TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    arn = s.elb.describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"]
    s.elb.create_listener(LoadBalancerArn=arn, Protocol="TCP", Port=3307,
                          DefaultActions=[{"Type": "forward", "TargetGroupArn": instance_tg}])
    [instance] = s.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=s.b,
                                     SecurityGroupIds=[s.db_sg])["Instances"]
    s.elb.register_targets(TargetGroupArn=instance_tg, Targets=[{"Id": instance["InstanceId"], "Port": 3306}])
    health = s.elb.describe_target_health(TargetGroupArn=instance_tg)["TargetHealthDescriptions"][0]["TargetHealth"]
    assert health["State"] == "healthy", health


def test_a_bad_initial_setting_is_ignored(emulator, aws):
    set_initial_describes(emulator, "soon")
    try:
        s = Setup(aws)
        s.allow()
        s.balancer([s.a, s.b])
        s.register()
        assert [s.health()[0] for _ in range(2)] == ["initial", "healthy"]  # still the default
    finally:
        set_initial_describes(emulator, 1)
