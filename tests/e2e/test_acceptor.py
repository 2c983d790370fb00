"""The accept function on the local stack, driven by the connection notifications the emulator
publishes to the stack's SNS topic: only TiDB Cloud's account is accepted on the stack's own
services, anyone else is rejected, services the stack does not manage are left alone, and a
notification delivered twice is harmless. Results are read back through the AWS API (and, for
"did it run / did it fail", the function's own log under the stack's state directory).

    .venv/bin/python -m pytest -q tests/e2e/test_acceptor.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest

from local_stack import scenario
from local_stack.stack import control

Aws = Callable[[str], Any]

IDENTIFIER = "acceptor-db"
THIRD_ACCOUNT = "222233334444"  # neither the stack's account nor TiDB Cloud's
# What the third account's user may do: just enough to ask for a connection.
THIRD_ACCOUNT_ACTIONS = ["ec2:CreateVpc", "ec2:CreateSubnet", "ec2:CreateVpcEndpoint", "ec2:DescribeVpcEndpoints",
                         "ec2:DeleteVpcEndpoints"]


# --- helpers ---------------------------------------------------------------------------------------


def ec2_client(stack: dict[str, Any], key: str, secret: str) -> Any:
    return boto3.client("ec2", endpoint_url=stack["endpoint"], region_name=stack["region"],
                        aws_access_key_id=key, aws_secret_access_key=secret)


def third_account_user(stack: dict[str, Any]) -> dict[str, str]:
    """An IAM user in THIRD_ACCOUNT, made the way `local-stack up` makes the TiDB Cloud stand-in
    (stack._tidb_cloud_user): the account is bootstrapped with an administrator role that the
    stack's account may assume (as AWS Organizations does), and the stack's administrator assumes
    it to create the user, give it a policy and keys. IAM enforcement stays on throughout."""
    role_arn = control.bootstrap_account(stack["endpoint"], THIRD_ACCOUNT)
    admin = stack["admin"]
    sts = boto3.client("sts", endpoint_url=stack["endpoint"], region_name=stack["region"],
                       aws_access_key_id=admin["access_key_id"], aws_secret_access_key=admin["secret_access_key"])
    assumed = sts.assume_role(RoleArn=role_arn, RoleSessionName="e2e-third-account")["Credentials"]
    iam = boto3.client("iam", endpoint_url=stack["endpoint"], region_name=stack["region"],
                       aws_access_key_id=assumed["AccessKeyId"], aws_secret_access_key=assumed["SecretAccessKey"],
                       aws_session_token=assumed["SessionToken"])
    iam.create_user(UserName="third-party")
    iam.put_user_policy(UserName="third-party", PolicyName="RequestConnections", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": THIRD_ACCOUNT_ACTIONS, "Resource": "*"}]}))
    key = iam.create_access_key(UserName="third-party")["AccessKey"]
    user = {"account": THIRD_ACCOUNT, "access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    identity = boto3.client("sts", endpoint_url=stack["endpoint"], region_name=stack["region"],
                            aws_access_key_id=user["access_key_id"],
                            aws_secret_access_key=user["secret_access_key"]).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{THIRD_ACCOUNT}:user/third-party", identity
    return user


class Consumer:
    """An account that asks for connections: a VPC with one subnet, and its endpoints."""

    def __init__(self, ec2: Any, cidr_prefix: str):
        self.ec2 = ec2
        self.vpc = ec2.create_vpc(CidrBlock=f"{cidr_prefix}.0.0/16")["Vpc"]["VpcId"]
        self.subnet = ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"{cidr_prefix}.1.0/24",
                                        AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]

    def request(self, service_name: str) -> str:
        endpoint = self.ec2.create_vpc_endpoint(VpcEndpointType="Interface", VpcId=self.vpc, ServiceName=service_name,
                                                SubnetIds=[self.subnet])["VpcEndpoint"]
        assert endpoint["State"] == "pendingAcceptance", endpoint["State"]
        return endpoint["VpcEndpointId"]

    def state(self, endpoint_id: str) -> str:
        return self.ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint_id])["VpcEndpoints"][0]["State"]

    def wait(self, endpoint_id: str, wanted: str, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        state = self.state(endpoint_id)
        while state != wanted and time.time() < deadline:
            time.sleep(0.5)
            state = self.state(endpoint_id)
        return state


def third_account_allowed_by_hand(aws: Aws, stack: dict[str, Any], service_id: str, cidr_prefix: str) -> Consumer:
    """THIRD_ACCOUNT, which the service's owner has added to its allowed principals by hand, ready
    to ask for a connection from a VPC of its own."""
    aws("ec2").modify_vpc_endpoint_service_permissions(
        ServiceId=service_id, AddAllowedPrincipals=[f"arn:aws:iam::{THIRD_ACCOUNT}:root"])
    user = third_account_user(stack)
    return Consumer(ec2_client(stack, user["access_key_id"], user["secret_access_key"]), cidr_prefix)


def connection_states(aws: Aws, service_id: str) -> dict[str, str]:
    """endpoint ID -> state, as the service owner sees its connections."""
    connections = aws("ec2").describe_vpc_endpoint_connections(
        Filters=[{"Name": "service-id", "Values": [service_id]}])["VpcEndpointConnections"]
    return {c["VpcEndpointId"]: c["VpcEndpointState"] for c in connections}


class FunctionLog:
    """The accept function's log (cargo lambda watch's output: JSON lines from the function)."""

    def __init__(self, stack: dict[str, Any]):
        function = next(f for f in stack["functions"] if f["logical_id"] == "AcceptConnectionsFunction")
        self.path = Path(stack["state_dir"]) / "logs" / f"{function['name']}.log"

    def offset(self) -> int:
        return self.path.stat().st_size

    def records(self, offset: int = 0) -> list[dict[str, Any]]:
        with open(self.path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        out = []
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    @staticmethod
    def request_id(record: dict[str, Any]) -> str | None:
        return (record.get("span") or {}).get("requestId")

    def decisions(self, offset: int) -> list[dict[str, Any]]:
        return [r["fields"] for r in self.records(offset)
                if r.get("fields", {}).get("message") == "connection request decided"]


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(aws: Aws, stack: dict[str, Any], network: scenario.Network) -> dict[str, Any]:
    """An endpoint service the stack provisioned (a manual start, as an administrator may)."""
    scenario.create_database(aws, network, IDENTIFIER)
    execution_arn = aws("stepfunctions").start_execution(
        stateMachineArn=stack["state_machines"]["ProvisionStateMachine"],
        input=json.dumps({"db_instance_identifier": IDENTIFIER}))["executionArn"]
    execution = scenario.run_to_end(aws, execution_arn)
    assert execution["status"] == "SUCCEEDED", f"{execution.get('error')}: {execution.get('cause')}"
    name = json.loads(execution["output"])["endpoint_service_name"]
    [config] = aws("ec2").describe_vpc_endpoint_service_configurations(
        Filters=[{"Name": "service-name", "Values": [name]}])["ServiceConfigurations"]
    assert scenario.managed_by(config.get("Tags", []), stack["stack_name"], IDENTIFIER), config.get("Tags")
    return {"id": config["ServiceId"], "name": name}


@pytest.fixture(scope="module")
def tidb_cloud(stack: dict[str, Any]) -> Consumer:
    tidb = stack["tidb_cloud"]
    return Consumer(ec2_client(stack, tidb["access_key_id"], tidb["secret_access_key"]), "10.97")


@pytest.fixture(scope="module")
def acceptor_log(stack: dict[str, Any]) -> FunctionLog:
    return FunctionLog(stack)


# --- the tests -------------------------------------------------------------------------------------


def test_a_third_account_allowed_by_hand_is_rejected(aws: Aws, stack: dict[str, Any], service: dict[str, Any],
                                                     tidb_cloud: Consumer, acceptor_log: FunctionLog,
                                                     driver: Any) -> None:
    tidb_endpoint = tidb_cloud.request(service["name"])
    assert tidb_cloud.wait(tidb_endpoint, "available") == "available", "TiDB Cloud's endpoint was not accepted"

    # The service owner widens the allowed principals by hand; the third account asks to connect.
    third = third_account_allowed_by_hand(aws, stack, service["id"], "10.96")
    offset = acceptor_log.offset()
    third_endpoint = third.request(service["name"])

    assert third.wait(third_endpoint, "rejected") == "rejected", "the third account's endpoint was not rejected"
    assert tidb_cloud.state(tidb_endpoint) == "available"
    assert connection_states(aws, service["id"]) == {tidb_endpoint: "available", third_endpoint: "rejected"}
    # The rejection is the acceptor's (not the emulator's) decision.
    decided = [(d["endpoint"], d["owner"], d["accepted"]) for d in acceptor_log.decisions(offset)]
    assert decided == [(third_endpoint, THIRD_ACCOUNT, False)], decided
    # Told to the notification topic, and counted for the stack's alarm.
    told = driver.told(IDENTIFIER, "foreign-connection-rejected")
    assert [(t["vpc_endpoint_id"], t["vpc_endpoint_owner"], t["service_id"]) for t in told] == [
        (third_endpoint, THIRD_ACCOUNT, service["id"])], told
    rejected = aws("cloudwatch").get_metric_statistics(
        Namespace="TiDBPrivateLink", MetricName="ForeignConnectionRejected",
        Dimensions=[{"Name": "Stack", "Value": stack["stack_name"]}], StartTime=time.time() - 600,
        EndTime=time.time() + 60, Period=300, Statistics=["Sum"])["Datapoints"]
    assert sum(d["Sum"] for d in rejected) == 1, rejected


def test_a_service_the_stack_does_not_manage_is_left_pending(aws: Aws, stack: dict[str, Any],
                                                             network: scenario.Network, service: dict[str, Any],
                                                             tidb_cloud: Consumer,
                                                             acceptor_log: FunctionLog) -> None:
    elbv2, ec2 = aws("elbv2"), aws("ec2")
    balancer = elbv2.create_load_balancer(Name="not-managed-nlb", Type="network", Scheme="internal",
                                          Subnets=list(network.subnets.values()))["LoadBalancers"][0]
    other = ec2.create_vpc_endpoint_service_configuration(
        NetworkLoadBalancerArns=[balancer["LoadBalancerArn"]], AcceptanceRequired=True)["ServiceConfiguration"]
    tidb_endpoint = other_endpoint = None
    try:
        ec2.modify_vpc_endpoint_service_permissions(
            ServiceId=other["ServiceId"], AddAllowedPrincipals=[f"arn:aws:iam::{stack['tidb_cloud_account_id']}:root"])
        # Its connection notifications even go to the stack's topic: the acceptor runs for them.
        ec2.create_vpc_endpoint_connection_notification(
            ServiceId=other["ServiceId"], ConnectionNotificationArn=stack["outputs"]["ConnectionTopicArn"],
            ConnectionEvents=["Connect"])
        offset = acceptor_log.offset()

        other_endpoint = tidb_cloud.request(other["ServiceName"])
        # A request to the stack's own service in the same period: once it is accepted, the acceptor
        # has run while the other request was pending.
        tidb_endpoint = tidb_cloud.request(service["name"])
        assert tidb_cloud.wait(tidb_endpoint, "available") == "available", "the managed service's request was not accepted"
        # Both notifications' runs have logged by now.
        deadline = time.time() + 10
        while time.time() < deadline and len([r for r in acceptor_log.records(offset) if r.get("fields", {}).get(
                "message") == "connection notification received"]) < 2:
            time.sleep(0.3)

        assert tidb_cloud.state(other_endpoint) == "pendingAcceptance"
        assert connection_states(aws, other["ServiceId"]) == {other_endpoint: "pendingAcceptance"}
        decided = acceptor_log.decisions(offset)
        # Runs may overlap (Lambda runs one instance per concurrent invocation), so the managed
        # endpoint may be decided by more than one run; it is the only one decided.
        ours = [d for d in decided if d.get("service") == service["id"]]
        assert {d["endpoint"] for d in ours} == {tidb_endpoint} and all(d["accepted"] for d in ours), decided
        assert not [d for d in decided if d.get("service") == other["ServiceId"]], decided
    finally:
        for endpoint in (other_endpoint,):
            if endpoint:
                tidb_cloud.ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint])
        ec2.delete_vpc_endpoint_service_configurations(ServiceIds=[other["ServiceId"]])
        elbv2.delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])


def test_a_duplicated_notification_is_harmless(aws: Aws, stack: dict[str, Any], service: dict[str, Any],
                                               tidb_cloud: Consumer, acceptor_log: FunctionLog) -> None:
    """SNS delivers at least once: the Connect notification reaches the acceptor twice, with the
    same message ID (the emulator's duplicate-delivery fault); the second run changes nothing."""
    offset = acceptor_log.offset()
    emulator_log = Path(stack["state_dir"]) / "logs" / "emulator.log"
    emulator_offset = emulator_log.stat().st_size
    control.faults(stack["endpoint"], [{"action": "sns:Publish", "fault": "duplicate-delivery"}])
    try:
        endpoint = tidb_cloud.request(service["name"])
        assert tidb_cloud.wait(endpoint, "available") == "available", "TiDB Cloud's endpoint was not accepted"
        # The two runs for the duplicated message, each followed to its last line or to an error.
        deadline = time.time() + 30
        runs: dict[str, list[dict[str, Any]]] = {}
        while time.time() < deadline:
            records = acceptor_log.records(offset)
            by_message: dict[str, set[str]] = {}
            for record in records:
                message_id = record.get("fields", {}).get("message_id")
                if message_id:
                    by_message.setdefault(message_id, set()).add(FunctionLog.request_id(record))
            twice = [requests for requests in by_message.values() if len(requests) >= 2]
            runs = {request_id: [r for r in records if FunctionLog.request_id(r) == request_id]
                    for requests in twice for request_id in requests}
            finished = [run for run in runs.values() if any(
                r.get("level") == "ERROR" or r.get("fields", {}).get("message") == "connection requests answered"
                for r in run)]
            if runs and len(finished) == len(runs):
                break
            time.sleep(0.3)
    finally:
        control.faults(stack["endpoint"], None)
    assert len(twice) == 1 and len(runs) == 2, f"expected one notification run twice: {by_message}"

    every = [r for run in runs.values() for r in run]
    assert not [r for r in every if r.get("level") == "ERROR"], every
    with open(emulator_log, "rb") as log:  # an invocation that failed outright is reported here
        log.seek(emulator_offset)
        failed = [line for line in log.read().decode(errors="replace").splitlines()
                  if "AcceptConnections" in line and "failed" in line]
    assert not failed, failed
    decided = [r["fields"] for r in acceptor_log.records(offset) if r.get("fields", {}).get("endpoint") == endpoint
               and r["fields"].get("message") == "connection request decided"]
    assert decided and all(d["accepted"] for d in decided), decided
    # Run one after the other, the second finds nothing pending; run at once (Lambda runs an
    # instance per delivery), both decide and the later Accept finds the connection answered.
    lost_race = [r for r in every if r.get("fields", {}).get("message")
                 == "connection changed before it was answered; nothing to do"]
    assert (len(decided), len(lost_race)) in ((1, 0), (2, 1)), (decided, lost_race)
    assert tidb_cloud.state(endpoint) == "available"
    assert connection_states(aws, service["id"])[endpoint] == "available"
