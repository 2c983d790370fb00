"""Account quotas (patches/quotas.py): a create beyond the quota fails as AWS fails it and
creates nothing; an idempotent create of an existing resource is never refused; the quotas are
changed as a Service Quotas increase would change them."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from botocore.exceptions import ClientError

import control
from conftest import make_network


def quotas(url: str, method: str = "GET", body: Any = None) -> tuple[int, dict[str, Any]]:
    return control.route(url, "/_emulator/quotas", method, body)


@pytest.fixture
def restored(emulator) -> Iterator[str]:
    try:
        yield emulator.url
    finally:
        assert quotas(emulator.url, "DELETE")[0] == 200


def code(call: Any) -> str:
    with pytest.raises(ClientError) as error:
        call()
    return error.value.response["Error"]["Code"]


def test_aws_default_quotas_are_in_force() -> None:
    from patches.quotas import DEFAULTS

    assert DEFAULTS == {"network-load-balancers": 50, "target-groups": 3000, "listeners-per-load-balancer": 50,
                        "security-groups": 2500, "rules-per-security-group": 60}


def test_a_create_beyond_a_quota_fails_and_creates_nothing(restored: str, aws) -> None:
    net = make_network(aws("ec2"))
    elbv2, ec2 = aws("elbv2"), aws("ec2")
    # Whatever other tests of the session left in other accounts: the quota is per account.
    assert quotas(restored, "POST", {"network-load-balancers": 1, "target-groups": 1,
                                     "rules-per-security-group": 2})[1]["network-load-balancers"] == 1
    nlb = dict(Type="network", Scheme="internal", Subnets=net["subnets"])
    first = elbv2.create_load_balancer(Name="q-first", **nlb)["LoadBalancers"][0]["LoadBalancerArn"]
    # The same name and settings again: the existing one, not a new one.
    assert elbv2.create_load_balancer(Name="q-first", **nlb)["LoadBalancers"][0]["LoadBalancerArn"] == first
    assert code(lambda: elbv2.create_load_balancer(Name="q-second", **nlb)) == "TooManyLoadBalancers"
    assert [b["LoadBalancerName"] for b in elbv2.describe_load_balancers()["LoadBalancers"]] == ["q-first"]

    group = dict(Protocol="TCP", Port=3306, VpcId=net["vpc"], TargetType="ip")
    elbv2.create_target_group(Name="q-first", **group)
    assert code(lambda: elbv2.create_target_group(Name="q-second", **group)) == "TooManyTargetGroups"

    sg = ec2.create_security_group(GroupName="q", Description="q", VpcId=net["vpc"])["GroupId"]
    rule = lambda cidr: [{"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306,  # noqa: E731
                          "IpRanges": [{"CidrIp": cidr}]}]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=rule("10.0.1.0/24"))
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=rule("10.0.2.0/24"))
    assert code(lambda: ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=rule("10.0.3.0/24"))) == \
        "RulesPerSecurityGroupLimitExceeded"
    described = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["IpPermissions"]
    assert len([r for p in described for r in p["IpRanges"]]) == 2

    # Raised, as Service Quotas would: the call goes through.
    quotas(restored, "POST", {"network-load-balancers": 2})
    elbv2.create_load_balancer(Name="q-second", **nlb)


def test_a_load_balancer_takes_50_listeners_and_no_more(restored: str, aws) -> None:
    net = make_network(aws("ec2"))
    elbv2 = aws("elbv2")
    nlb = elbv2.create_load_balancer(Name="q-listeners", Type="network", Scheme="internal",
                                     Subnets=net["subnets"])["LoadBalancers"][0]["LoadBalancerArn"]
    other = elbv2.create_load_balancer(Name="q-other", Type="network", Scheme="internal",
                                       Subnets=net["subnets"])["LoadBalancers"][0]["LoadBalancerArn"]
    # One target group for each load balancer, as AWS wants.
    groups = {arn: elbv2.create_target_group(Name=name, Protocol="TCP", Port=3306, VpcId=net["vpc"], TargetType="ip")[
        "TargetGroups"][0]["TargetGroupArn"] for arn, name in ((nlb, "q-listeners"), (other, "q-other"))}
    listen = lambda arn, port: elbv2.create_listener(  # noqa: E731
        LoadBalancerArn=arn, Protocol="TCP", Port=port,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[arn]}])["Listeners"][0]["ListenerArn"]
    arns = [listen(nlb, 4000 + i) for i in range(50)]
    # The same listener again is the existing one, not a 51st.
    assert listen(nlb, 4000) == arns[0]
    assert code(lambda: listen(nlb, 4050)) == "TooManyListeners"
    assert len(elbv2.describe_listeners(LoadBalancerArn=nlb)["Listeners"]) == 50
    # The quota is per load balancer.
    listen(other, 4050)
    elbv2.delete_listener(ListenerArn=arns[-1])
    listen(nlb, 4050)


def test_a_raised_rules_quota_admits_rules_past_the_default(restored: str, aws) -> None:
    ec2 = aws("ec2")
    net = make_network(ec2)
    sg = ec2.create_security_group(GroupName="q-many", Description="q", VpcId=net["vpc"])["GroupId"]
    rule = lambda i: [{"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306,  # noqa: E731
                       "IpRanges": [{"CidrIp": f"10.1.{i}.0/24"}]}]
    quotas(restored, "POST", {"rules-per-security-group": 62})
    for i in range(62):  # one a call, as the product adds them: past AWS's default of 60
        ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=rule(i))
    assert code(lambda: ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=rule(62))) == \
        "RulesPerSecurityGroupLimitExceeded"
    described = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["IpPermissions"]
    assert len([r for p in described for r in p["IpRanges"]]) == 62


def test_a_malformed_quota_change_is_refused(restored: str) -> None:
    status, answer = quotas(restored, "POST", {"load-balancers": 5})
    assert status == 400 and "network-load-balancers" in answer["message"]
    assert quotas(restored, "POST", {"network-load-balancers": -1})[0] == 400
    assert quotas(restored)[1]["network-load-balancers"] == 50
