"""What a user of the local stack does, as boto3 calls: build a VPC with a MySQL RDS instance, opt
it in with the tag, and follow the execution that starts. Shared by scripts/demo and the
end-to-end tests (tests/e2e), so both exercise exactly the same path.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import boto3
from botocore.config import Config

OPT_IN_TAG = "tidb-privatelink"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


def clients(state: dict[str, Any]) -> Callable[[str], Any]:
    """boto3 clients of the stack's administrator (the credentials printed by `up`)."""
    session = boto3.Session(
        aws_access_key_id=state["admin"]["access_key_id"],
        aws_secret_access_key=state["admin"]["secret_access_key"],
        region_name=state["region"],
    )
    config = Config(retries={"max_attempts": 2, "mode": "standard"})
    return lambda service: session.client(service, endpoint_url=state["endpoint"], config=config)


@dataclass
class Network:
    vpc_id: str
    cidr: str
    subnets: dict[str, str]  # AZ name -> subnet ID
    subnet_group: str
    security_group_id: str


def create_network(aws: Callable[[str], Any], name: str, cidr_prefix: str = "10.30") -> Network:
    """A VPC across three AZs, a DB subnet group over it, and the database's security group
    (MySQL from inside the VPC only), as a team would have before opting in."""
    ec2 = aws("ec2")
    cidr = f"{cidr_prefix}.0.0/16"
    vpc = ec2.create_vpc(CidrBlock=cidr, TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": name}]}])["Vpc"]["VpcId"]
    subnets = {}
    for index, zone in enumerate(ZONES):
        subnets[zone] = ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"{cidr_prefix}.{index + 1}.0/24", AvailabilityZone=zone,
            TagSpecifications=[{"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": f"{name}-db-{zone[-1]}"}]}],
        )["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{name}-db", Description=f"{name} MySQL", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "IpRanges": [{"CidrIp": cidr, "Description": "apps in the VPC"}]}])
    aws("rds").create_db_subnet_group(DBSubnetGroupName=f"{name}-db", DBSubnetGroupDescription=f"{name} database",
                                      SubnetIds=list(subnets.values()))
    return Network(vpc, cidr, subnets, f"{name}-db", group)


def create_database(aws: Callable[[str], Any], network: Network, identifier: str, engine: str = "mysql",
                    engine_version: str = "8.0.35", tags: list[dict[str, str]] | None = None,
                    multi_az: bool = False) -> dict[str, Any]:
    port = 5432 if engine.startswith("postgres") else 3306
    return aws("rds").create_db_instance(
        DBInstanceIdentifier=identifier, Engine=engine, EngineVersion=engine_version, DBInstanceClass="db.t3.micro",
        AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="local-only-password",
        DBSubnetGroupName=network.subnet_group, VpcSecurityGroupIds=[network.security_group_id],
        PubliclyAccessible=False, Port=port, Tags=tags or [], MultiAZ=multi_az,
    )["DBInstance"]


def opt_in(aws: Callable[[str], Any], db_arn: str, value: str = "true") -> None:
    aws("rds").add_tags_to_resource(ResourceName=db_arn, Tags=[{"Key": OPT_IN_TAG, "Value": value}])


def executions(aws: Callable[[str], Any], state_machine_arn: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in aws("stepfunctions").get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        out += page["executions"]
    return out


def execution_input(aws: Callable[[str], Any], execution_arn: str) -> dict[str, Any]:
    return json.loads(aws("stepfunctions").describe_execution(executionArn=execution_arn).get("input") or "{}")


def wait_for_execution(aws: Callable[[str], Any], state_machine_arn: str, identifier: str, known: set[str],
                       timeout: float = 60) -> str:
    """The ARN of the new execution (not in ``known``) that concerns ``identifier``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for execution in executions(aws, state_machine_arn):
            if execution["executionArn"] in known:
                continue
            if identifier in json.dumps(execution_input(aws, execution["executionArn"])):
                return execution["executionArn"]
        time.sleep(0.5)
    raise TimeoutError(f"no execution of {state_machine_arn} for {identifier} started within {timeout:.0f} s")


def follow(aws: Callable[[str], Any], execution_arn: str, timeout: float = 900,
           poll: float = 0.5) -> Iterator[dict[str, Any]]:
    """Yields history events as they happen, until the execution ends; then its description."""
    sfn = aws("stepfunctions")
    seen = 0
    deadline = time.time() + timeout
    while True:
        events = []
        token = None
        while True:
            page = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000,
                                             **({"nextToken": token} if token else {}))
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                break
        for event in events[seen:]:
            yield event
        seen = len(events)
        description = sfn.describe_execution(executionArn=execution_arn)
        if description["status"] != "RUNNING":
            # Events written between the two calls.
            for event in sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"][seen:]:
                yield event
            yield {"type": "__end__", "execution": description}
            return
        if time.time() > deadline:
            raise TimeoutError(f"{execution_arn} still RUNNING after {timeout:.0f} s")
        time.sleep(poll)


def run_to_end(aws: Callable[[str], Any], execution_arn: str, timeout: float = 900) -> dict[str, Any]:
    for event in follow(aws, execution_arn, timeout):
        if event["type"] == "__end__":
            return event["execution"]
    raise AssertionError("unreachable")


def database_tag(identifier: str) -> tuple[str, str]:
    """The ownership tag of a database: ``orders`` is an instance, ``cluster:orders`` a DB cluster."""
    if identifier.startswith("cluster:"):
        return "tidb-privatelink:db-cluster", identifier.removeprefix("cluster:")
    return "tidb-privatelink:db-instance", identifier


def managed_by(tags: list[dict[str, str]] | dict[str, str], stack: str, identifier: str) -> bool:
    if isinstance(tags, list):
        tags = {t["Key"]: t["Value"] for t in tags}
    key, value = database_tag(identifier)
    return tags.get("tidb-privatelink:managed-by") == stack and tags.get(key) == value
