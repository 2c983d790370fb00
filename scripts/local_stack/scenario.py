"""What a user of the local stack does, as boto3 calls: build a VPC with a MySQL RDS instance, opt
it in with the tag, and follow the execution that starts. Shared by scripts/demo and the
end-to-end tests (tests/e2e), so both exercise exactly the same path.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

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


def follow(aws: Callable[[str], Any], execution_arn: str, timeout: float = 900, poll: float = 0.5,
           tick: Callable[[], None] = lambda: None) -> Iterator[dict[str, Any]]:
    """Yields history events as they happen, until the execution ends; then its description.
    ``tick`` is called after each poll (to watch something else meanwhile)."""
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
        tick()
        time.sleep(poll)


def run_to_end(aws: Callable[[str], Any], execution_arn: str, timeout: float = 900) -> dict[str, Any]:
    for event in follow(aws, execution_arn, timeout):
        if event["type"] == "__end__":
            return event["execution"]
    raise AssertionError("unreachable")


def instance_of_input(value: dict[str, Any]) -> str | None:
    """The database an execution is about, as the workflows read its input (``<id>`` for an
    instance, ``cluster:<id>`` for a DB cluster): a request or rollback, or the CloudTrail event
    that started it (src/turn.rs reads it the same way)."""
    detail = value.get("detail") or {}
    parameters, elements = detail.get("requestParameters") or {}, detail.get("responseElements") or {}
    text = lambda found: str(found).lower() if found else None  # noqa: E731
    if value.get("db_instance_identifier") or value.get("db_cluster_identifier"):
        return text(value.get("db_instance_identifier")) or f"cluster:{text(value['db_cluster_identifier'])}"
    arn = str(parameters.get("resourceName", "")).lower()
    for marker, prefix in ((":db:", ""), (":cluster:", "cluster:")):
        if marker in arn:
            return prefix + arn.rsplit(marker, 1)[1]
    field = lambda name: text(elements.get(name) or parameters.get(name))  # noqa: E731
    instance, cluster = field("dBInstanceIdentifier"), field("dBClusterIdentifier")
    return instance or (f"cluster:{cluster}" if cluster else None)


def database_tag(identifier: str) -> tuple[str, str]:
    """The ownership tag of a database: ``orders`` is an instance, ``cluster:orders`` a DB cluster;
    ``vpc:<vpc-id>`` names the parts a VPC's databases share (LoadBalancerSharing=per-vpc)."""
    for prefix, key in (("cluster:", "tidb-privatelink:db-cluster"), ("vpc:", "tidb-privatelink:vpc")):
        if identifier.startswith(prefix):
            return key, identifier.removeprefix(prefix)
    return "tidb-privatelink:db-instance", identifier


def vpc_key(vpc_id: str) -> str:
    """The key of a VPC's shared parts, as the workflows name them (src/naming.rs's vpc_key)."""
    return f"vpc:{vpc_id}"


def managed_by(tags: list[dict[str, str]] | dict[str, str], stack: str, identifier: str) -> bool:
    if isinstance(tags, list):
        tags = {t["Key"]: t["Value"] for t in tags}
    key, value = database_tag(identifier)
    return tags.get("tidb-privatelink:managed-by") == stack and tags.get(key) == value


# --- what a stack owns for one instance ------------------------------------------------------------


RESOURCE_KINDS = ("target_groups", "load_balancers", "listeners", "security_groups", "db_sg_rules",
                  "endpoint_services", "turn_leases")


class Inventory(dict):
    """Everything of one stack for one instance, by kind (lists of AWS descriptions)."""

    def counts(self) -> dict[str, int]:
        return {kind: len(self[kind]) for kind in RESOURCE_KINDS}

    def total(self) -> int:
        return sum(len(self[kind]) for kind in RESOURCE_KINDS)

    def empty(self) -> bool:
        return self.total() == 0

    def summary(self) -> str:
        return f"{self.total()} resources {self.counts()}"


def inventory(aws: Callable[[str], Any], stack: str, identifier: str | Sequence[str],
              db_security_group_id: str | None = None,
              also_groups: set[str] = frozenset()) -> Inventory:  # type: ignore[assignment]
    """Everything tagged ``managed-by=<stack>`` and ``db-instance=<identifier>`` (``db-cluster``
    for ``cluster:<id>``, ``vpc`` for ``vpc:<id>``; given several identifiers, what any of them
    owns, each resource once): ELBv2 target groups, load balancers and listeners (of those load
    balancers, or tagged), EC2 security groups, security group rules that carry our tags
    (anywhere) or that admit one of our groups into the DB's security group (``also_groups``:
    group IDs seen earlier, so a rule that outlived its group still counts), endpoint services,
    and the turn lease of each identifier (an item of the stack's turn table, which every way out
    of a workflow releases). (Not EC2 DescribeTags: moto keeps listing the tags of deleted groups
    and revoked rules there.)"""
    elbv2, ec2 = aws("elbv2"), aws("ec2")
    groups = [g for page in elbv2.get_paginator("describe_target_groups").paginate() for g in page["TargetGroups"]]
    balancers = [b for page in elbv2.get_paginator("describe_load_balancers").paginate() for b in page["LoadBalancers"]]
    listeners = [(b["LoadBalancerArn"], l) for b in balancers
                 for l in elbv2.describe_listeners(LoadBalancerArn=b["LoadBalancerArn"])["Listeners"]]
    tags = elb_tags(elbv2, [g["TargetGroupArn"] for g in groups] + [b["LoadBalancerArn"] for b in balancers]
                    + [l["ListenerArn"] for _, l in listeners])
    keys = [identifier] if isinstance(identifier, str) else list(identifier)
    owned = lambda found: any(managed_by(found, stack, key) for key in keys)  # noqa: E731
    mine = lambda arn: owned(tags.get(arn, {}))  # noqa: E731
    owners: dict[str, list[str]] = {}  # tag key -> values, one EC2 filter each
    for key, value in map(database_tag, keys):
        owners.setdefault(key, []).append(value)
    filters = [[{"Name": "tag:tidb-privatelink:managed-by", "Values": [stack]}, {"Name": f"tag:{key}", "Values": values}]
               for key, values in owners.items()]
    security_groups = list({g["GroupId"]: g for ours in filters
                            for g in ec2.describe_security_groups(Filters=ours)["SecurityGroups"]}.values())
    group_ids = {g["GroupId"] for g in security_groups} | set(also_groups)
    # Rules on the DB's group that admit one of our groups, and any rule anywhere with our tags.
    rules = {r["SecurityGroupRuleId"]: r for ours in filters
             for r in ec2.describe_security_group_rules(Filters=ours)["SecurityGroupRules"]}
    if db_security_group_id:
        for rule in ec2.describe_security_group_rules(
                Filters=[{"Name": "group-id", "Values": [db_security_group_id]}])["SecurityGroupRules"]:
            if rule.get("ReferencedGroupInfo", {}).get("GroupId") in group_ids:
                rules[rule["SecurityGroupRuleId"]] = rule
    services = [s for s in ec2.describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]
                if owned(s.get("Tags", []))]
    dynamodb = aws("dynamodb")
    leases = [item for table in dynamodb.list_tables()["TableNames"] if table.startswith(f"{stack}-") for key in keys
              for item in [dynamodb.get_item(TableName=table, ConsistentRead=True,
                                             Key={"db_instance_identifier": {"S": key}}).get("Item")] if item]
    return Inventory(
        target_groups=[g for g in groups if mine(g["TargetGroupArn"])],
        load_balancers=[b for b in balancers if mine(b["LoadBalancerArn"])],
        listeners=[l for lb, l in listeners if mine(lb) or mine(l["ListenerArn"])],
        security_groups=security_groups,
        db_sg_rules=list(rules.values()),
        endpoint_services=services,
        turn_leases=leases,
    )


def elb_tags(elbv2: Any, arns: list[str]) -> dict[str, dict[str, str]]:
    """Tags of ELBv2 resources by ARN (DescribeTags takes 20 ARNs a call)."""
    out: dict[str, dict[str, str]] = {}
    for start in range(0, len(arns), 20):
        for item in elbv2.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            out[item["ResourceArn"]] = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
    return out


class TiDBCloudApi:
    """TiDB Cloud's API as a TiDB Cloud user calls it (HTTP digest with the stack's key pair)."""

    def __init__(self, url: str, keys: dict[str, str]):
        from requests.auth import HTTPDigestAuth

        self.url, self.auth = url, HTTPDigestAuth(keys["public_key"], keys["private_key"])

    def connections(self, cluster: str) -> list[dict[str, Any]]:
        import requests

        answer = requests.get(f"{self.url}/v1beta1/clusters/{cluster}/privateLinkConnections",
                              params={"pageSize": 100}, auth=self.auth, timeout=10)
        answer.raise_for_status()
        return answer.json().get("privateLinkConnections", [])


def tidb_cloud_api(aws: Callable[[str], Any], parameters: dict[str, str]) -> TiDBCloudApi | None:
    """TiDB Cloud's API as the stack's parameters reach it (its key read from the stack's secret);
    None when the stack has no API key."""
    secret_arn = parameters.get("TiDBCloudApiKeySecretArn")
    if not secret_arn:
        return None
    keys = json.loads(aws("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
    return TiDBCloudApi(parameters.get("TiDBCloudApiUrl") or "https://serverless.tidbapi.com", keys)
