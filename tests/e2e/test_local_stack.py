"""End to end on the local stack: the real functions, state machines and rules of template.yaml,
started by the RDS events a user's actions produce, checked by reading AWS back (as the admin).

    .venv/bin/python -m pytest tests/e2e
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
from botocore.exceptions import ClientError

from local_stack import scenario
from local_stack.processes import free_ports, port_in_use
from local_stack.stack import DEFAULT_FUNCTION_CONCURRENCY

ROOT = Path(__file__).resolve().parents[2]

Aws = Callable[[str], Any]


# --- reading back what the stack created ------------------------------------------------------------


def owned(aws: Aws, stack: dict[str, Any], identifier: str) -> scenario.Inventory:
    """Everything tagged as this stack's work for ``identifier``."""
    return scenario.inventory(aws, stack["stack_name"], identifier)


def database_ip(aws: Aws, vpc_id: str, identifier: str) -> str:
    """The instance's address as AWS shows it: its RDS network interface in the VPC."""
    rds = aws("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    interfaces = aws("ec2").describe_network_interfaces(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "description", "Values": ["RDSNetworkInterface"]},
    ])["NetworkInterfaces"]
    zone = rds["AvailabilityZone"]
    addresses = [i["PrivateIpAddress"] for i in interfaces if i["AvailabilityZone"] == zone]
    assert addresses, f"no RDSNetworkInterface for {identifier} in {vpc_id}"
    return addresses[-1]


def provision(aws: Aws, stack: dict[str, Any], identifier: str, start: Callable[[], None]) -> dict[str, Any]:
    machine = stack["state_machines"]["ProvisionStateMachine"]
    known = {e["executionArn"] for e in scenario.executions(aws, machine)}
    start()
    execution = scenario.wait_for_execution(aws, machine, identifier, known, timeout=30)
    return scenario.run_to_end(aws, execution, timeout=900)


def why(execution: dict[str, Any]) -> str:
    return f"{execution['status']}: {execution.get('error')}: {execution.get('cause')}"


def function_credentials(stack: dict[str, Any], logical_id: str) -> dict[str, str]:
    function = next(f for f in stack["functions"] if f["logical_id"] == logical_id)
    env_file = Path(stack["state_dir"]) / "functions" / f"{function['name']}.env"
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    return {key: value.strip("'\"") for key, value in values.items()}


# --- the flows -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orders(aws: Aws, stack: dict[str, Any], network: scenario.Network) -> dict[str, Any]:
    """A MySQL instance opted in by tagging it: the README's first scenario."""
    db = scenario.create_database(aws, network, "orders-db")
    execution = provision(aws, stack, "orders-db", lambda: scenario.opt_in(aws, db["DBInstanceArn"]))
    return {"db": db, "execution": execution}


def test_tagging_an_instance_provisions_privatelink(aws: Aws, stack: dict[str, Any], network: scenario.Network,
                                                   orders: dict[str, Any]) -> None:
    execution = orders["execution"]
    assert execution["status"] == "SUCCEEDED", why(execution)
    output = json.loads(execution["output"])
    assert re.fullmatch(r"com\.amazonaws\.vpce\.us-east-1\.vpce-svc-[0-9a-f]+", output["endpoint_service_name"])

    created = owned(aws, stack, "orders-db")
    assert [len(created[k]) for k in ("target_groups", "load_balancers", "security_groups", "endpoint_services")] == [1, 1, 1, 1]
    elbv2, ec2 = aws("elbv2"), aws("ec2")

    # Target group: IP targets on the DB port in the DB's VPC, the DB's private IP registered.
    group = created["target_groups"][0]
    assert (group["TargetType"], group["Protocol"], group["Port"], group["VpcId"]) == ("ip", "TCP", 3306, network.vpc_id)
    assert group["HealthCheckProtocol"] == "TCP"
    targets = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
    assert [t["Target"]["Id"] for t in targets] == [database_ip(aws, network.vpc_id, "orders-db")]
    attributes = {a["Key"]: a["Value"] for a in
                  elbv2.describe_target_group_attributes(TargetGroupArn=group["TargetGroupArn"])["Attributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == "0"

    # NLB: internal, network, in the DB's VPC with its own security group, TCP listener to the group.
    balancer = created["load_balancers"][0]
    nlb_group = created["security_groups"][0]["GroupId"]
    assert (balancer["Type"], balancer["Scheme"], balancer["VpcId"]) == ("network", "internal", network.vpc_id)
    assert ":loadbalancer/net/" in balancer["LoadBalancerArn"]
    assert balancer["SecurityGroups"] == [nlb_group]
    zones = {z["ZoneName"] for z in balancer["AvailabilityZones"]}
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1c"}, (
        "the NLB belongs in the AZs shared with TiDB Cloud (use1-az1, use1-az2: 1b, 1c) and in the DB subnet "
        "group's (the database is in 1a)")
    assert [t["TargetHealth"]["State"] for t in elbv2.describe_target_health(
        TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]] == ["healthy"]
    listeners = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    assert [(l["Protocol"], l["Port"], l["DefaultActions"][0]["TargetGroupArn"]) for l in listeners] == [
        ("TCP", 3306, group["TargetGroupArn"])]
    lb_attributes = {a["Key"]: a["Value"] for a in
                     elbv2.describe_load_balancer_attributes(LoadBalancerArn=balancer["LoadBalancerArn"])["Attributes"]}
    assert lb_attributes["load_balancing.cross_zone.enabled"] == "true"

    # Security groups: the DB's group admits the port from the NLB's group only.
    db_group = ec2.describe_security_groups(GroupIds=[network.security_group_id])["SecurityGroups"][0]
    from_nlb = [p for p in db_group["IpPermissions"]
                if any(pair["GroupId"] == nlb_group for pair in p.get("UserIdGroupPairs", []))]
    assert [(p["IpProtocol"], p["FromPort"], p["ToPort"]) for p in from_nlb] == [("tcp", 3306, 3306)]
    assert not [p for p in db_group["IpPermissions"] if any(r["CidrIp"] == "0.0.0.0/0" for r in p.get("IpRanges", []))]

    # Endpoint service: on the NLB, acceptance required, TiDB Cloud's account only, notifying the topic.
    service = created["endpoint_services"][0]
    assert service["ServiceName"] == output["endpoint_service_name"]
    assert service["NetworkLoadBalancerArns"] == [balancer["LoadBalancerArn"]]
    assert service["AcceptanceRequired"] is True
    principals = ec2.describe_vpc_endpoint_service_permissions(ServiceId=service["ServiceId"])["AllowedPrincipals"]
    assert [p["Principal"] for p in principals] == [f"arn:aws:iam::{stack['tidb_cloud_account_id']}:root"]
    notifications = ec2.describe_vpc_endpoint_connection_notifications(
        Filters=[{"Name": "service-id", "Values": [service["ServiceId"]]}])["ConnectionNotificationSet"]
    assert [n["ConnectionNotificationArn"] for n in notifications] == [stack["outputs"]["ConnectionTopicArn"]]


def test_tidb_clouds_endpoint_is_accepted_through_the_topic(aws: Aws, stack: dict[str, Any],
                                                          orders: dict[str, Any]) -> None:
    """TiDB Cloud's account asks to connect; the notification reaches the accept function over SNS."""
    assert orders["execution"]["status"] == "SUCCEEDED", why(orders["execution"])
    service_name = json.loads(orders["execution"]["output"])["endpoint_service_name"]
    tidb = stack["tidb_cloud"]
    ec2 = boto3.client("ec2", endpoint_url=stack["endpoint"], region_name=stack["region"],
                       aws_access_key_id=tidb["access_key_id"], aws_secret_access_key=tidb["secret_access_key"])
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.1.0/24", AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
    endpoint = ec2.create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc, ServiceName=service_name,
                                       SubnetIds=[subnet])["VpcEndpoint"]
    assert endpoint["State"] == "pendingAcceptance"
    deadline = time.time() + 120
    state = endpoint["State"]
    while time.time() < deadline and state != "available":
        time.sleep(0.5)
        state = ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint["VpcEndpointId"]])["VpcEndpoints"][0]["State"]
    assert state == "available", "the accept function did not accept TiDB Cloud's endpoint"


def test_a_manual_start_provisions_a_second_instance(aws: Aws, stack: dict[str, Any],
                                                    network: scenario.Network) -> None:
    scenario.create_database(aws, network, "billing-db", engine="mariadb", engine_version="10.11.6")
    machine = stack["state_machines"]["ProvisionStateMachine"]
    execution_arn = aws("stepfunctions").start_execution(
        stateMachineArn=machine, name="manual-billing-db", input=json.dumps({"db_instance_identifier": "billing-db"}),
    )["executionArn"]
    execution = scenario.run_to_end(aws, execution_arn)
    assert execution["status"] == "SUCCEEDED", why(execution)
    created = owned(aws, stack, "billing-db")
    assert [len(created[k]) for k in ("target_groups", "load_balancers", "security_groups", "endpoint_services")] == [1, 1, 1, 1]
    assert json.loads(execution["output"])["endpoint_service_name"] == created["endpoint_services"][0]["ServiceName"]


def test_a_postgres_instance_fails_with_unsupported_engine_and_leaves_nothing(
        aws: Aws, stack: dict[str, Any], network: scenario.Network) -> None:
    db = scenario.create_database(aws, network, "analytics-pg", engine="postgres", engine_version="16.3")
    execution = provision(aws, stack, "analytics-pg", lambda: scenario.opt_in(aws, db["DBInstanceArn"]))
    assert execution["status"] == "FAILED"
    assert execution["error"] == "UnsupportedEngine", why(execution)
    assert "postgres" in execution["cause"]
    assert all(not found for found in owned(aws, stack, "analytics-pg").values())


def test_functions_run_with_their_own_roles_and_iam_is_enforced(aws: Aws, stack: dict[str, Any]) -> None:
    credentials = function_credentials(stack, "InspectDatabaseFunction")
    session = boto3.Session(aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=credentials["AWS_SESSION_TOKEN"], region_name=stack["region"])
    identity = session.client("sts", endpoint_url=stack["endpoint"]).get_caller_identity()
    role = next(f["role_arn"] for f in stack["functions"] if f["logical_id"] == "InspectDatabaseFunction")
    assert identity["Arn"].startswith(f"arn:aws:sts::{stack['account']}:assumed-role/{role.split('/')[-1]}/")
    rds = session.client("rds", endpoint_url=stack["endpoint"])
    rds.describe_db_instances()  # in its policy
    with pytest.raises(ClientError) as denied:  # not in its policy
        rds.add_tags_to_resource(ResourceName=f"arn:aws:rds:us-east-1:{stack['account']}:db:orders-db",
                                 Tags=[{"Key": "x", "Value": "y"}])
    assert denied.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException", "403")
    stranger = boto3.client("sts", endpoint_url=stack["endpoint"], region_name=stack["region"],
                            aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="wJalrXUtnFEMI")
    with pytest.raises(ClientError) as unknown:
        stranger.get_caller_identity()
    assert unknown.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_removing_the_tag_deprovisions(aws: Aws, stack: dict[str, Any], orders: dict[str, Any]) -> None:
    assert orders["execution"]["status"] == "SUCCEEDED", why(orders["execution"])
    machine = stack["state_machines"]["DeprovisionStateMachine"]
    known = {e["executionArn"] for e in scenario.executions(aws, machine)}
    aws("rds").remove_tags_from_resource(ResourceName=orders["db"]["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG])
    execution = scenario.run_to_end(aws, scenario.wait_for_execution(aws, machine, "orders-db", known, timeout=30))
    assert execution["status"] == "SUCCEEDED", why(execution)
    assert all(not found for found in owned(aws, stack, "orders-db").values())


def test_tidb_cloud_parameters_without_no_tidb_cloud_are_refused_before_anything_starts(tmp_path: Path) -> None:
    """TiDB Cloud's account and zones come from its API (the double) unless --no-tidb-cloud."""
    up = subprocess.run([str(ROOT / "scripts/local-stack"), "up", "--state-dir", str(tmp_path), "--port", "0",
                         "--dns-port", "0", "--tidb-cloud-account-id", "111122223333"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "--tidb-cloud-account-id and --tidb-cloud-az-ids go with --no-tidb-cloud" in up.stderr
    assert not (tmp_path / "pids").exists() and not (tmp_path / "state.json").exists()


def test_the_ports_picked_for_a_stack_are_distinct_free_and_not_taken() -> None:
    # Twelve functions and the TiDB Cloud double: each its own port, none of those already given.
    taken = free_ports(3)
    ports = free_ports(13, taken=taken)
    assert len(set(ports)) == 13 and not set(ports) & set(taken)
    assert not any(port_in_use(port) or port_in_use(port, udp=True) for port in ports)


def test_each_function_runs_as_many_instances_as_lambda_would_start_for_a_burst(stack: dict[str, Any]) -> None:
    """cargo lambda watch runs one instance of a function unless told; a wave's invocations would
    queue behind it and time out, which Lambda's scaling does not do."""
    for function in stack["functions"]:
        argv = Path(f"/proc/{function['pid']}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"--concurrency") + 1] == str(DEFAULT_FUNCTION_CONCURRENCY).encode(), function["name"]


def test_a_function_concurrency_below_one_is_refused_before_anything_starts(tmp_path: Path) -> None:
    up = subprocess.run([str(ROOT / "scripts/local-stack"), "up", "--state-dir", str(tmp_path), "--port", "0",
                         "--dns-port", "0", "--function-concurrency", "0"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert up.returncode == 1 and "--function-concurrency must be at least 1, not 0" in up.stderr, up.stderr
    assert not (tmp_path / "pids").exists() and not (tmp_path / "state.json").exists()


def test_alarms_and_the_dashboard_watch_the_stack(aws: Aws, stack: dict[str, Any]) -> None:
    """Deployed from template.yaml: every alarm tells the notification topic; the dashboard shows
    both workflows and the alarms."""
    topic = stack["outputs"]["NotificationTopicArn"]
    alarms = {a["AlarmName"]: a for a in aws("cloudwatch").describe_alarms(
        AlarmNamePrefix=stack["stack_name"] + "-")["MetricAlarms"]}
    assert set(alarms) == {f"{stack['stack_name']}-{n}" for n in (
        "provisioning-failed", "teardown-failed", "function-errors", "target-not-healthy",
        "foreign-connection-rejected", "failed-invocations")}, set(alarms)
    assert all(a["AlarmActions"] == [topic] for a in alarms.values()), alarms
    failed = alarms[f"{stack['stack_name']}-provisioning-failed"]
    assert (failed["Namespace"], failed["MetricName"], failed["Dimensions"]) == (
        "AWS/States", "ExecutionsFailed", [{"Name": "StateMachineArn", "Value": stack["state_machines"]["ProvisionStateMachine"]}])
    rejected = alarms[f"{stack['stack_name']}-foreign-connection-rejected"]
    assert (rejected["Namespace"], rejected["MetricName"], rejected["Dimensions"]) == (
        "TiDBPrivateLink", "ForeignConnectionRejected", [{"Name": "Stack", "Value": stack["stack_name"]}])
    body = json.loads(aws("cloudwatch").get_dashboard(DashboardName=stack["stack_name"])["DashboardBody"])
    text = json.dumps(body)
    assert all(arn in text for arn in stack["state_machines"].values())
    assert all(a["AlarmArn"] in text for a in alarms.values())
