"""IAM on the local stack, evaluated as AWS evaluates it (tests/emulator/README.md, IAM): a
function of this stack cannot touch what another stack (or nobody) tagged, and a statement removed
from the deployed template is an AccessDenied naming its action in the middle of a provisioning.

    .venv/bin/python -m pytest -q tests/e2e/test_iam.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
from botocore.exceptions import ClientError

from local_stack import scenario

Aws = Callable[[str], Any]
MANAGED_BY = "tidb-privatelink:managed-by"


def function_clients(stack: dict[str, Any], logical_id: str) -> Aws:
    """Clients with the credentials the function runs with (its role, as Lambda gives them)."""
    function = next(f for f in stack["functions"] if f["logical_id"] == logical_id)
    env: dict[str, str] = {}
    for line in (Path(stack["state_dir"]) / "functions" / f"{function['name']}.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value.strip("'\"")
    session = boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=env["AWS_SESSION_TOKEN"], region_name=stack["region"])
    return lambda service: session.client(service, endpoint_url=stack["endpoint"])


def refusal(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as error:
        call()
    return error.value.response["Error"]["Code"], error.value.response["Error"]["Message"]


def foreign_resources(aws: Aws, network: scenario.Network, label: str, tags: list[dict[str, str]]) -> dict[str, str]:
    """An NLB (with a listener), a target group, a security group and an endpoint service, named as
    this stack names its own (tidbpl-...), so only their tags tell them apart."""
    elbv2, ec2 = aws("elbv2"), aws("ec2")
    suffix = f"{label}-{random.randint(0, 10**6)}"
    extra = {"Tags": tags} if tags else {}
    subnets = list(network.subnets.values())[:2]
    lb = elbv2.create_load_balancer(Name=f"tidbpl-{suffix}", Type="network", Scheme="internal", Subnets=subnets,
                                    SecurityGroups=[network.security_group_id], **extra)["LoadBalancers"][0]
    tg = elbv2.create_target_group(Name=f"tidbpl-{suffix}", Protocol="TCP", Port=3306, VpcId=network.vpc_id,
                                   TargetType="ip", **extra)["TargetGroups"][0]
    spec = lambda kind: [{"ResourceType": kind, "Tags": tags}] if tags else []  # noqa: E731
    group = ec2.create_security_group(GroupName=f"tidbpl-{suffix}", Description="not ours", VpcId=network.vpc_id,
                                      TagSpecifications=spec("security-group"))["GroupId"]
    service = ec2.create_vpc_endpoint_service_configuration(
        NetworkLoadBalancerArns=[lb["LoadBalancerArn"]], AcceptanceRequired=True,
        TagSpecifications=spec("vpc-endpoint-service"))["ServiceConfiguration"]["ServiceId"]
    return {"lb": lb["LoadBalancerArn"], "tg": tg["TargetGroupArn"], "sg": group, "service": service}


def test_a_function_cannot_touch_another_stacks_or_untagged_resources(
        stack: dict[str, Any], aws: Aws, network: scenario.Network) -> None:
    fn = lambda logical_id: function_clients(stack, logical_id)  # noqa: E731
    for label, tags in (("other", [{"Key": MANAGED_BY, "Value": "another-stack"}]), ("untagged", [])):
        r = foreign_resources(aws, network, label, tags)
        calls = {
            "elasticloadbalancing:DeleteLoadBalancer": lambda: fn("RemoveLoadBalancerFunction")("elbv2")
            .delete_load_balancer(LoadBalancerArn=r["lb"]),
            "elasticloadbalancing:ModifyLoadBalancerAttributes": lambda: fn("LoadBalancerFunction")("elbv2")
            .modify_load_balancer_attributes(LoadBalancerArn=r["lb"], Attributes=[
                {"Key": "load_balancing.cross_zone.enabled", "Value": "true"}]),
            "elasticloadbalancing:DeleteTargetGroup": lambda: fn("RemoveTargetGroupFunction")("elbv2")
            .delete_target_group(TargetGroupArn=r["tg"]),
            "elasticloadbalancing:RegisterTargets": lambda: fn("SyncTargetsFunction")("elbv2")
            .register_targets(TargetGroupArn=r["tg"], Targets=[{"Id": "10.30.1.10"}]),
            "ec2:DeleteSecurityGroup": lambda: fn("RemoveSecurityGroupsFunction")("ec2")
            .delete_security_group(GroupId=r["sg"]),
            "ec2:AuthorizeSecurityGroupEgress": lambda: fn("SecurityGroupsFunction")("ec2")
            .authorize_security_group_egress(GroupId=r["sg"], IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]),
            "ec2:DeleteVpcEndpointServiceConfigurations": lambda: fn("RemoveEndpointServiceFunction")("ec2")
            .delete_vpc_endpoint_service_configurations(ServiceIds=[r["service"]]),
            "ec2:ModifyVpcEndpointServicePermissions": lambda: fn("EndpointServiceFunction")("ec2")
            .modify_vpc_endpoint_service_permissions(ServiceId=r["service"],
                                                     AddAllowedPrincipals=["arn:aws:iam::111122223333:root"]),
        }
        for action, call in calls.items():
            code, message = refusal(call)
            assert (label, action, code) == (label, action,
                                             "UnauthorizedOperation" if action.startswith("ec2:") else "AccessDenied")
            assert f"is not authorized to perform: {action} on resource: " in message, message
    # The same teardown calls go through for resources with this stack's own tag.
    ours = foreign_resources(aws, network, "ours", [{"Key": MANAGED_BY, "Value": stack["stack_name"]}])
    fn("RemoveEndpointServiceFunction")("ec2").delete_vpc_endpoint_service_configurations(ServiceIds=[ours["service"]])
    fn("RemoveLoadBalancerFunction")("elbv2").delete_load_balancer(LoadBalancerArn=ours["lb"])
    fn("RemoveTargetGroupFunction")("elbv2").delete_target_group(TargetGroupArn=ours["tg"])
    fn("RemoveSecurityGroupsFunction")("ec2").delete_security_group(GroupId=ours["sg"])


def test_a_statement_removed_from_the_template_is_a_live_access_denied(
        stack: dict[str, Any], aws: Aws, driver: Any, network: scenario.Network) -> None:
    """The target group step's TagTargetGroupOnCreate statement (elasticloadbalancing:AddTags on
    create) removed from the role as deployed: provisioning fails on that very authorization."""
    deployed = json.loads((Path(stack["state_dir"]) / "policies.json").read_text())["roles"]["TargetGroupFunctionRole"]
    role = deployed["arn"].split("/")[-1]
    [policy] = [p for p in deployed["policies"]
                if any(s.get("Sid") == "TagTargetGroupOnCreate" for s in p["policy"]["Statement"])]
    variant = {**policy["policy"], "Statement": [s for s in policy["policy"]["Statement"]
                                                 if s.get("Sid") != "TagTargetGroupOnCreate"]}
    iam = aws("iam")
    identifier = "iam-variant-db"
    db = scenario.create_database(aws, network, identifier)
    iam.put_role_policy(RoleName=role, PolicyName=policy["name"], PolicyDocument=json.dumps(variant))
    try:
        known = driver.known("provision")
        scenario.opt_in(aws, db["DBInstanceArn"])
        [arn] = driver.new_executions("provision", identifier, known)
        execution = driver.run_to_end(arn, timeout=300)
    finally:
        iam.put_role_policy(RoleName=role, PolicyName=policy["name"], PolicyDocument=json.dumps(policy["policy"]))
    assert execution["status"] == "FAILED", execution
    assert "AccessDenied" in execution["cause"], execution["cause"]
    assert "is not authorized to perform: elasticloadbalancing:AddTags on resource: " in execution["cause"]
    assert ":targetgroup/tidbpl-" in execution["cause"], execution["cause"]
    assert driver.inventory(identifier).empty(), driver.inventory(identifier).summary()
