"""ELBv2: NLB ARNs, the PrivateLink security-group setting, idempotent creates."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import make_network


def nlb(elb, net, name="rds-nlb", groups=True, **extra):
    kwargs = dict(Name=name, Subnets=net["subnets"], Scheme="internal", Type="network")
    if groups:
        kwargs["SecurityGroups"] = [net["sg"]]
    kwargs.update(extra)
    return elb.create_load_balancer(**kwargs)["LoadBalancers"][0]


def target_group(elb, net, name="rds-tg", port=3306, **extra):
    return elb.create_target_group(
        Name=name, Protocol="TCP", Port=port, VpcId=net["vpc"], TargetType="ip", **extra
    )["TargetGroups"][0]


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_nlb_and_listener_arns_say_net(aws):
    elb = aws("elbv2")
    net = make_network(aws("ec2"))
    lb = nlb(elb, net)
    assert ":loadbalancer/net/rds-nlb/" in lb["LoadBalancerArn"]
    tg = target_group(elb, net)
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TCP", Port=3306,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )["Listeners"][0]
    assert ":listener/net/rds-nlb/" in listener["ListenerArn"]
    alb = elb.create_load_balancer(Name="web", Subnets=net["subnets"], Type="application")["LoadBalancers"][0]
    assert ":loadbalancer/app/web/" in alb["LoadBalancerArn"]


def test_enforce_privatelink_inbound_rules(aws):
    elb = aws("elbv2")
    net = make_network(aws("ec2"))
    arn = nlb(elb, net)["LoadBalancerArn"]

    described = elb.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    assert described["EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] == "on"  # AWS default

    out = elb.set_security_groups(
        LoadBalancerArn=arn, SecurityGroups=[net["sg"]], EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic="off"
    )
    assert out["SecurityGroupIds"] == [net["sg"]]
    assert out["EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] == "off"
    described = elb.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    assert described["EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] == "off"

    # Leaving the setting out keeps it.
    out = elb.set_security_groups(LoadBalancerArn=arn, SecurityGroups=[net["sg"]])
    assert out["EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] == "off"


def test_nlb_without_groups_cannot_get_them_later(aws):
    elb = aws("elbv2")
    net = make_network(aws("ec2"))
    lb = nlb(elb, net, groups=False)
    assert "EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic" not in lb
    with pytest.raises(ClientError) as err:
        elb.set_security_groups(LoadBalancerArn=lb["LoadBalancerArn"], SecurityGroups=[net["sg"]])
    assert error_code(err) == "InvalidConfigurationRequest"


def test_create_target_group_is_idempotent(aws):
    elb = aws("elbv2")
    net = make_network(aws("ec2"))
    first = target_group(elb, net)
    again = target_group(elb, net)
    assert again["TargetGroupArn"] == first["TargetGroupArn"]
    assert len(elb.describe_target_groups(Names=["rds-tg"])["TargetGroups"]) == 1
    with pytest.raises(ClientError) as err:
        target_group(elb, net, port=5432)
    assert error_code(err) == "DuplicateTargetGroupName"


def test_create_load_balancer_is_idempotent(aws):
    elb = aws("elbv2")
    net = make_network(aws("ec2"))
    first = nlb(elb, net)
    assert nlb(elb, net)["LoadBalancerArn"] == first["LoadBalancerArn"]
    assert len(elb.describe_load_balancers(Names=["rds-nlb"])["LoadBalancers"]) == 1
    with pytest.raises(ClientError) as err:
        nlb(elb, net, Subnets=net["subnets"][:1])
    assert error_code(err) == "DuplicateLoadBalancerName"


def test_create_listener_is_idempotent(aws):
    elb = aws("elbv2")
    net = make_network(aws("ec2"))
    lb = nlb(elb, net)["LoadBalancerArn"]
    tg1 = target_group(elb, net)["TargetGroupArn"]
    tg2 = target_group(elb, net, name="other-tg")["TargetGroupArn"]

    def listen(tg):
        return elb.create_listener(
            LoadBalancerArn=lb, Protocol="TCP", Port=3306,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        )["Listeners"][0]["ListenerArn"]

    assert listen(tg1) == listen(tg1)
    assert len(elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]) == 1
    with pytest.raises(ClientError) as err:
        listen(tg2)
    assert error_code(err) == "DuplicateListener"


def test_nlb_in_use_by_endpoint_service_cannot_be_deleted(aws):
    elb, ec2 = aws("elbv2"), aws("ec2")
    net = make_network(ec2)
    arn = nlb(elb, net)["LoadBalancerArn"]
    service = ec2.create_vpc_endpoint_service_configuration(NetworkLoadBalancerArns=[arn])["ServiceConfiguration"]
    with pytest.raises(ClientError) as err:
        elb.delete_load_balancer(LoadBalancerArn=arn)
    assert error_code(err) == "ResourceInUse"
    ec2.delete_vpc_endpoint_service_configurations(ServiceIds=[service["ServiceId"]])
    elb.delete_load_balancer(LoadBalancerArn=arn)
    assert elb.describe_load_balancers()["LoadBalancers"] == []


THREE_ZONES = (("10.20.1.0/24", "us-east-1a"), ("10.20.2.0/24", "us-east-1b"), ("10.20.3.0/24", "us-east-1c"))


def zones_of(elb, arn):
    described = elb.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    return sorted((z["ZoneName"], z["SubnetId"]) for z in described["AvailabilityZones"])


def test_set_subnets_adds_zones_to_an_nlb(aws):
    elb, ec2 = aws("elbv2"), aws("ec2")
    net = make_network(ec2, subnets=THREE_ZONES)
    a, b, c = net["subnets"]
    # One zone is enough for an NLB.
    arn = nlb(elb, net, Subnets=[b])["LoadBalancerArn"]
    out = elb.set_subnets(LoadBalancerArn=arn, Subnets=[b, c, a])
    assert sorted(z["SubnetId"] for z in out["AvailabilityZones"]) == sorted([a, b, c])
    assert zones_of(elb, arn) == sorted([("us-east-1a", a), ("us-east-1b", b), ("us-east-1c", c)])


def test_set_subnets_refuses_what_aws_refuses(aws):
    elb, ec2 = aws("elbv2"), aws("ec2")
    net = make_network(ec2, subnets=THREE_ZONES)
    a, b, c = net["subnets"]
    arn = nlb(elb, net, Subnets=[a, b])["LoadBalancerArn"]
    other_a = ec2.create_subnet(VpcId=net["vpc"], CidrBlock="10.20.9.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    elsewhere = make_network(ec2, cidr="10.21.0.0/16", subnets=(("10.21.1.0/24", "us-east-1c"),))["subnets"][0]
    cases = [
        ([a, other_a, b, c], "InvalidConfigurationRequest"),  # two subnets in one zone
        ([other_a, b], "InvalidConfigurationRequest"),  # a zone's subnet swapped in one call
        ([a, b, elsewhere], "InvalidSubnet"),  # another VPC
        ([a, b, "subnet-0123456789abcdef0"], "SubnetNotFound"),
    ]
    for subnets, code in cases:
        with pytest.raises(ClientError) as err:
            elb.set_subnets(LoadBalancerArn=arn, Subnets=subnets)
        assert error_code(err) == code, subnets
    assert zones_of(elb, arn) == sorted([("us-east-1a", a), ("us-east-1b", b)])


def test_zones_cannot_be_removed_while_the_endpoint_service_has_connections(aws, other_aws):
    elb, ec2 = aws("elbv2"), aws("ec2")
    net = make_network(ec2, subnets=THREE_ZONES)
    a, b, c = net["subnets"]
    arn = nlb(elb, net, Subnets=[a, b])["LoadBalancerArn"]
    # Without connections a zone may go.
    elb.set_subnets(LoadBalancerArn=arn, Subnets=[a])
    elb.set_subnets(LoadBalancerArn=arn, Subnets=[a, b])
    service = ec2.create_vpc_endpoint_service_configuration(NetworkLoadBalancerArns=[arn], AcceptanceRequired=True)[
        "ServiceConfiguration"]
    ec2.modify_vpc_endpoint_service_permissions(
        ServiceId=service["ServiceId"], AddAllowedPrincipals=[f"arn:aws:iam::{other_aws.account}:root"])
    consumer = other_aws("ec2")
    consumer_net = make_network(consumer, cidr="10.30.0.0/16", subnets=(("10.30.1.0/24", "us-east-1a"),))
    consumer.create_vpc_endpoint(VpcEndpointType="Interface", VpcId=consumer_net["vpc"],
                                 ServiceName=service["ServiceName"], SubnetIds=consumer_net["subnets"])
    with pytest.raises(ClientError) as err:
        elb.set_subnets(LoadBalancerArn=arn, Subnets=[a, c])
    assert error_code(err) == "InvalidConfigurationRequest"
    assert "endpoint" in err.value.response["Error"]["Message"]
    # Every current subnet plus the new one: accepted.
    elb.set_subnets(LoadBalancerArn=arn, Subnets=[a, b, c])
    assert [zone for zone, _ in zones_of(elb, arn)] == ["us-east-1a", "us-east-1b", "us-east-1c"]


def test_ip_targets_must_be_in_the_vpc_or_private_with_zone_all(aws):
    ec2, elb = aws("ec2"), aws("elbv2")
    net = make_network(ec2)
    arn = target_group(elb, net, name="ip-checks")["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.20.1.10", "Port": 3306}])  # in a subnet
    with pytest.raises(ClientError) as outside:
        elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.99.0.5", "Port": 3306}])
    assert error_code(outside) == "ValidationError"
    assert "not in the VPC" in outside.value.response["Error"]["Message"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.99.0.5", "Port": 3306, "AvailabilityZone": "all"}])
    with pytest.raises(ClientError) as public:
        elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": "203.0.113.7", "Port": 3306, "AvailabilityZone": "all"}])
    assert error_code(public) == "ValidationError"
    registered = {d["Target"]["Id"] for d in elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]}
    assert registered == {"10.20.1.10", "10.99.0.5"}


def test_a_target_group_forgets_a_load_balancer_that_no_longer_routes_to_it(aws):
    elb = aws("elbv2")
    net = make_network(aws("ec2"))
    lb_arn = nlb(elb, net)["LoadBalancerArn"]
    kept, dropped = target_group(elb, net, "kept-tg"), target_group(elb, net, "dropped-tg", port=3307)
    listeners = [
        elb.create_listener(LoadBalancerArn=lb_arn, Protocol="TCP", Port=group["Port"],
                            DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}])["Listeners"][0]
        for group in (kept, dropped)
    ]

    def routed_by(group):
        return elb.describe_target_groups(TargetGroupArns=[group["TargetGroupArn"]])["TargetGroups"][0]["LoadBalancerArns"]

    assert routed_by(dropped) == [lb_arn]
    elb.delete_listener(ListenerArn=listeners[1]["ListenerArn"])
    assert (routed_by(kept), routed_by(dropped)) == ([lb_arn], [])
    elb.delete_load_balancer(LoadBalancerArn=lb_arn)
    assert routed_by(kept) == []
