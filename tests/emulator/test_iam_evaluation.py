"""IAM as AWS evaluates it (patches/iam_evaluation.py): resource ARNs and conditions count, a role
must exist and trust its caller, denials look like each service's, and the emulator never hides a
crash. Enforcement is global to an emulator, so these tests run on emulators of their own."""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import control
from conftest import REGION, make_network, new_account, start_emulator

STACK = "tidb-privatelink"
MANAGED_BY = "tidb-privatelink:managed-by"
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _client(url: str, service: str, creds: dict[str, str]) -> Any:
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds.get("SessionToken"),
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


class Account:
    """An account of an emulator with enforcement on: its administrator, and roles made for tests."""

    def __init__(self, url: str, account: str, admin: dict[str, str]):
        self.url, self.id, self.admin = url, account, admin

    def aws(self, service: str) -> Any:
        return _client(self.url, service, self.admin)

    def function_role(self, *statements: dict[str, Any]) -> Callable[[str], Any]:
        """Clients acting as a new Lambda function's role with these statements."""
        name = f"fn-{random.randint(0, 10**9)}"
        iam = self.aws("iam")
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
        if statements:
            iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": list(statements)}))
        creds = control.service_credentials(self.url, arn, "lambda.amazonaws.com", name)
        return lambda service: _client(self.url, service, creds)


def _enforced_account(url: str) -> Account:
    account = new_account()
    role_arn = control.bootstrap_account(url, account)
    sts = boto3.client("sts", endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    admin = sts.assume_role(RoleArn=role_arn, RoleSessionName="admin")["Credentials"]
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=5).read()
    return Account(url, account, admin)


@pytest.fixture(scope="module")
def enforced() -> Iterator[Account]:
    process, ready = start_emulator("--watch-pid", str(os.getpid()))
    url = f"http://127.0.0.1:{ready['port']}"
    try:
        yield _enforced_account(url)
        found = control.problems(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert not found, "\n".join(found)


@pytest.fixture
def own_emulator() -> Iterator[str]:
    """An emulator for a test that makes it record problems (they would fail the shared one)."""
    process, ready = start_emulator("--watch-pid", str(os.getpid()))
    try:
        yield f"http://127.0.0.1:{ready['port']}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def denied(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as error:
        call()
    return {"code": error.value.response["Error"]["Code"], "message": error.value.response["Error"]["Message"],
            "status": error.value.response["ResponseMetadata"]["HTTPStatusCode"]}


def _load_balancer(account: Account, name: str, tags: list[dict[str, str]]) -> tuple[str, str]:
    net = make_network(account.aws("ec2"))
    elbv2 = account.aws("elbv2")
    extra = {"Tags": tags} if tags else {}
    lb = elbv2.create_load_balancer(Name=name, Type="network", Scheme="internal", Subnets=net["subnets"],
                                    SecurityGroups=[net["sg"]], **extra)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name=name, Protocol="TCP", Port=3306, VpcId=net["vpc"], TargetType="ip",
                                   **extra)["TargetGroups"][0]["TargetGroupArn"]
    return lb, tg


# --- AssumeRole ----------------------------------------------------------------------------------


def test_assume_role_needs_an_existing_role_that_trusts_the_caller(emulator):
    sts = boto3.client("sts", endpoint_url=emulator.url, region_name=REGION, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    account = new_account()
    missing = denied(lambda: sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/anything", RoleSessionName="test"))
    assert (missing["code"], missing["status"]) == ("AccessDenied", 403)
    assert f"is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::{account}:role/anything" \
        in missing["message"]

    role_arn = control.bootstrap_account(emulator.url, account)
    admin = sts.assume_role(RoleArn=role_arn, RoleSessionName="test")["Credentials"]
    iam = _client(emulator.url, "iam", admin)
    elsewhere = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"}]}
    other = iam.create_role(RoleName="trusts-another-account", AssumeRolePolicyDocument=json.dumps(elsewhere))
    refused = denied(lambda: sts.assume_role(RoleArn=other["Role"]["Arn"], RoleSessionName="test"))
    assert refused["code"] == "AccessDenied"

    # A function's role is for Lambda: not for a user, nor for another service.
    function = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    assert denied(lambda: sts.assume_role(RoleArn=function, RoleSessionName="test"))["code"] == "AccessDenied"
    with pytest.raises(RuntimeError, match="403"):
        control.service_credentials(emulator.url, function, "states.amazonaws.com", "test")
    creds = control.service_credentials(emulator.url, function, "lambda.amazonaws.com", "test")
    assert _client(emulator.url, "sts", creds).get_caller_identity()["Arn"] == \
        f"arn:aws:sts::{account}:assumed-role/fn/test"


# --- conditions and resources --------------------------------------------------------------------


def test_a_multivalued_key_with_a_plain_operator_never_matches(enforced):
    lb, tg = _load_balancer(enforced, "tidbpl-listeners", [{"Key": MANAGED_BY, "Value": STACK}])
    on_own = {"Effect": "Allow", "Action": "elasticloadbalancing:CreateListener",
              "Resource": f"arn:aws:elasticloadbalancing:{REGION}:{enforced.id}:loadbalancer/net/tidbpl-*/*"}
    tag = {f"aws:ResourceTag/{MANAGED_BY}": STACK}
    plain = enforced.function_role({**on_own, "Condition": {"StringEquals": {
        **tag, "elasticloadbalancing:ListenerProtocol": "TCP"}}})
    set_operator = enforced.function_role({**on_own, "Condition": {
        "StringEquals": tag, "ForAnyValue:StringEquals": {"elasticloadbalancing:ListenerProtocol": "TCP"}}})
    listener = {"LoadBalancerArn": lb, "Protocol": "TCP", "Port": 3306,
                "DefaultActions": [{"Type": "forward", "TargetGroupArn": tg}]}

    refused = denied(lambda: plain("elbv2").create_listener(**listener))
    assert (refused["code"], refused["status"]) == ("AccessDenied", 403)
    assert f"is not authorized to perform: elasticloadbalancing:CreateListener on resource: {lb}" in refused["message"]
    created = set_operator("elbv2").create_listener(**listener)["Listeners"][0]
    assert created["LoadBalancerArn"] == lb
    # Only TCP: the same statement refuses a TLS listener.
    assert denied(lambda: set_operator("elbv2").create_listener(**{**listener, "Port": 3307, "Protocol": "UDP"}))[
        "code"] == "AccessDenied"


def test_resources_of_another_stack_or_untagged_are_refused(enforced):
    arn = f"arn:aws:elasticloadbalancing:{REGION}:{enforced.id}"
    ec2_arn = f"arn:aws:ec2:{REGION}:{enforced.id}"
    owned = {"StringEquals": {f"aws:ResourceTag/{MANAGED_BY}": STACK}}
    teardown = enforced.function_role(
        {"Effect": "Allow", "Action": ["elasticloadbalancing:DeleteLoadBalancer",
                                       "elasticloadbalancing:ModifyLoadBalancerAttributes"],
         "Resource": f"{arn}:loadbalancer/net/tidbpl-*/*", "Condition": owned},
        {"Effect": "Allow", "Action": "elasticloadbalancing:DeleteTargetGroup",
         "Resource": f"{arn}:targetgroup/tidbpl-*/*", "Condition": owned},
        {"Effect": "Allow", "Action": "ec2:DeleteSecurityGroup", "Resource": f"{ec2_arn}:security-group/*",
         "Condition": owned},
        {"Effect": "Allow", "Action": "ec2:DeleteVpcEndpointServiceConfigurations",
         "Resource": f"{ec2_arn}:vpc-endpoint-service/*", "Condition": owned},
    )
    ec2 = enforced.aws("ec2")
    for label, tags in (("other", [{"Key": MANAGED_BY, "Value": "another-stack"}]), ("untagged", []),
                        ("mine", [{"Key": MANAGED_BY, "Value": STACK}])):
        lb, tg = _load_balancer(enforced, f"tidbpl-{label}", tags)
        net = make_network(ec2, cidr="10.30.0.0/16", subnets=(("10.30.1.0/24", "us-east-1a"),))
        spec = [{"ResourceType": "security-group", "Tags": tags}] if tags else []
        group = ec2.create_security_group(GroupName=f"g-{label}", Description="t", VpcId=net["vpc"],
                                          TagSpecifications=spec)["GroupId"]
        service_spec = [{"ResourceType": "vpc-endpoint-service", "Tags": tags}] if tags else []
        other_lb, _ = _load_balancer(enforced, f"tidbpl-svc-{label}", tags)
        service = ec2.create_vpc_endpoint_service_configuration(
            NetworkLoadBalancerArns=[other_lb], AcceptanceRequired=True,
            TagSpecifications=service_spec)["ServiceConfiguration"]["ServiceId"]
        elb, ec2_fn = teardown("elbv2"), teardown("ec2")
        calls = {
            "elasticloadbalancing:ModifyLoadBalancerAttributes": lambda: elb.modify_load_balancer_attributes(
                LoadBalancerArn=lb, Attributes=[{"Key": "load_balancing.cross_zone.enabled", "Value": "true"}]),
            "elasticloadbalancing:DeleteLoadBalancer": lambda: elb.delete_load_balancer(LoadBalancerArn=lb),
            "elasticloadbalancing:DeleteTargetGroup": lambda: elb.delete_target_group(TargetGroupArn=tg),
            "ec2:DeleteSecurityGroup": lambda: ec2_fn.delete_security_group(GroupId=group),
            "ec2:DeleteVpcEndpointServiceConfigurations": lambda: ec2_fn.delete_vpc_endpoint_service_configurations(
                ServiceIds=[service]),
        }
        for action, call in calls.items():
            if label == "mine":
                call()  # the stack's own resources: allowed
                continue
            refusal = denied(call)
            expected = "UnauthorizedOperation" if action.startswith("ec2:") else "AccessDenied"
            assert (label, action, refusal["code"]) == (label, action, expected)
            assert f"is not authorized to perform: {action} on resource: " in refusal["message"]


def test_tagging_on_create_is_a_separate_authorization(enforced):
    net = make_network(enforced.aws("ec2"))
    create_only = enforced.function_role({
        "Effect": "Allow", "Action": "elasticloadbalancing:CreateTargetGroup",
        "Resource": f"arn:aws:elasticloadbalancing:{REGION}:{enforced.id}:targetgroup/tidbpl-*/*",
        "Condition": {"StringEquals": {f"aws:RequestTag/{MANAGED_BY}": STACK}}})
    create = dict(Name="tidbpl-tagged", Protocol="TCP", Port=3306, VpcId=net["vpc"], TargetType="ip",
                  Tags=[{"Key": MANAGED_BY, "Value": STACK}])
    refused = denied(lambda: create_only("elbv2").create_target_group(**create))
    assert ("is not authorized to perform: elasticloadbalancing:AddTags on resource: "
            f"arn:aws:elasticloadbalancing:{REGION}:{enforced.id}:targetgroup/tidbpl-tagged/*") in refused["message"]
    # With another stack's tag the create itself is refused.
    wrong_tag = denied(lambda: create_only("elbv2").create_target_group(
        **{**create, "Tags": [{"Key": MANAGED_BY, "Value": "another-stack"}]}))
    assert "elasticloadbalancing:CreateTargetGroup on resource" in wrong_tag["message"]


def test_denials_are_answered_as_each_service_answers(enforced):
    nothing = enforced.function_role()
    expected = {
        "ec2": (lambda c: c.describe_vpcs(), "UnauthorizedOperation", 403, "ec2:DescribeVpcs"),
        "elbv2": (lambda c: c.describe_load_balancers(), "AccessDenied", 403, "elasticloadbalancing:DescribeLoadBalancers"),
        "rds": (lambda c: c.describe_db_instances(), "AccessDenied", 403, "rds:DescribeDBInstances"),
        "stepfunctions": (lambda c: c.list_state_machines(), "AccessDeniedException", 400, "states:ListStateMachines"),
        "lambda": (lambda c: c.list_functions(), "AccessDeniedException", 403, "lambda:ListFunctions"),
        "secretsmanager": (lambda c: c.list_secrets(), "AccessDeniedException", 400, "secretsmanager:ListSecrets"),
        "sns": (lambda c: c.list_topics(), "AuthorizationError", 403, "sns:ListTopics"),
    }
    for service, (call, code, status, action) in expected.items():
        refusal = denied(lambda: call(nothing(service)))
        assert (service, refusal["code"], refusal["status"]) == (service, code, status)
        assert f"is not authorized to perform: {action} on resource: " in refusal["message"], refusal
    assert denied(lambda: nothing("ec2").describe_vpcs())["message"].startswith(
        "You are not authorized to perform this operation.")


# --- failing closed, and never crashing ----------------------------------------------------------


def test_a_product_call_without_a_mapping_fails_closed(own_emulator):
    account = _enforced_account(own_emulator)
    everything = account.function_role({"Effect": "Allow", "Action": "*", "Resource": "*"})
    refusal = denied(lambda: everything("ec2").create_vpc(CidrBlock="10.40.0.0/16"))
    assert refusal["code"] == "UnauthorizedOperation"
    assert "cannot map ec2:CreateVpc" in refusal["message"]
    assert any("ec2:CreateVpc" in line for line in control.problems(own_emulator))
    # An administrator of the tests is not the product: evaluated on "*".
    assert account.aws("ec2").create_vpc(CidrBlock="10.41.0.0/16")["Vpc"]["VpcId"]


def test_a_crash_is_answered_in_the_services_protocol_and_recorded(own_emulator):
    ec2 = boto3.client("ec2", endpoint_url=own_emulator, region_name=REGION, aws_access_key_id="testing",
                       aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))
    assert control.problems(own_emulator) == []
    crash = denied(lambda: ec2.describe_ipam_pools())  # not implemented by moto
    assert (crash["code"], crash["status"]) == ("InternalFailure", 500)
    found = control.problems(own_emulator)
    assert any("describe_ipam_pools" in line for line in found), found


# --- PrivateLink's notifications need the topic policy -------------------------------------------


def test_notifications_reach_only_a_topic_whose_policy_admits_privatelink(aws, other_aws):
    from test_vpce_connections import consumer_endpoint, drain
    from test_vpce_services import endpoint_service

    service = endpoint_service(aws)
    aws("ec2").modify_vpc_endpoint_service_permissions(
        ServiceId=service["ServiceId"], AddAllowedPrincipals=[f"arn:aws:iam::{other_aws.account}:root"])
    sns = aws("sns")
    admitted, default = (sns.create_topic(Name=name)["TopicArn"] for name in ("admitted", "default-policy"))
    sns.set_topic_attributes(TopicArn=admitted, AttributeName="Policy", AttributeValue=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "vpce.amazonaws.com"}, "Action": "sns:Publish",
            "Resource": admitted, "Condition": {"StringEquals": {"aws:SourceAccount": aws.account}}}]}))
    queues = {}
    for topic in (admitted, default):
        sqs = aws("sqs")
        url = sqs.create_queue(QueueName=topic.rsplit(":", 1)[-1])["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        queues[topic] = (sqs, url)
        aws("ec2").create_vpc_endpoint_connection_notification(
            ServiceId=service["ServiceId"], ConnectionNotificationArn=topic, ConnectionEvents=["Connect"])
    consumer_endpoint(other_aws, service["ServiceName"])
    assert [e["eventType"] for e in drain(*queues[admitted])] == ["Connect"]
    # The default topic policy admits the account's own principals, not vpce.amazonaws.com.
    assert drain(*queues[default]) == []


def test_calls_being_added_are_mapped(enforced):
    """SetSubnets on the stack's own NLB only; DescribeTargetHealth on "*"; PutMetricData by
    namespace: the authorizations these calls need are known, so they do not fail closed."""
    lb, tg = _load_balancer(enforced, "tidbpl-subnets", [{"Key": MANAGED_BY, "Value": STACK}])
    other, _ = _load_balancer(enforced, "tidbpl-foreign", [{"Key": MANAGED_BY, "Value": "another-stack"}])
    role = enforced.function_role(
        {"Effect": "Allow", "Action": "elasticloadbalancing:SetSubnets",
         "Resource": f"arn:aws:elasticloadbalancing:{REGION}:{enforced.id}:loadbalancer/net/tidbpl-*/*",
         "Condition": {"StringEquals": {f"aws:ResourceTag/{MANAGED_BY}": STACK}}},
        {"Effect": "Allow", "Action": "elasticloadbalancing:DescribeTargetHealth", "Resource": "*"},
        {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": "TiDBPrivateLink"}}})
    elbv2 = role("elbv2")
    subnets = [z["SubnetId"] for z in enforced.aws("elbv2").describe_load_balancers(
        LoadBalancerArns=[lb])["LoadBalancers"][0]["AvailabilityZones"]]
    elbv2.set_subnets(LoadBalancerArn=lb, Subnets=subnets)
    assert "elasticloadbalancing:SetSubnets on resource: " + other in denied(
        lambda: elbv2.set_subnets(LoadBalancerArn=other, Subnets=subnets))["message"]
    assert elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"] == []
    metric = [{"MetricName": "Provisioned", "Value": 1.0}]
    role("cloudwatch").put_metric_data(Namespace="TiDBPrivateLink", MetricData=metric)
    assert denied(lambda: role("cloudwatch").put_metric_data(Namespace="Other", MetricData=metric))["code"] == \
        "AccessDenied"


def test_publishing_to_an_encrypted_topic_needs_its_key_policy(enforced):
    """SNS encrypts with the topic's key as the publisher: a role allowed sns:Publish still gets
    AccessDenied unless the key's policy admits it (the key policy below names one role only and
    does not delegate data use to the account)."""
    publish = {"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}
    named, unnamed = enforced.function_role(publish), enforced.function_role(publish)
    named_arn = named("sts").get_caller_identity()["Arn"]
    role_arn = f"arn:aws:iam::{enforced.id}:role/{named_arn.split('/')[1]}"
    key = enforced.aws("kms").create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{enforced.id}:root"},
         "Action": ["kms:Describe*", "kms:Put*", "kms:Get*"], "Resource": "*"},
        {"Sid": "Publisher", "Effect": "Allow", "Principal": {"AWS": role_arn},
         "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"}]}))["KeyMetadata"]["KeyId"]
    topic = enforced.aws("sns").create_topic(Name=f"encrypted-{random.randint(0, 10**9)}",
                                             Attributes={"KmsMasterKeyId": key})["TopicArn"]
    named("sns").publish(TopicArn=topic, Message="told")
    refused = denied(lambda: unnamed("sns").publish(TopicArn=topic, Message="told"))
    assert "kms:GenerateDataKey" in refused["message"], refused


def test_send_task_success_is_checked_against_the_tokens_state_machine():
    """AWS's data lists no resource type for SendTaskSuccess ("*" only); AWS checks it against the
    state machine whose execution issued the token, and so does the emulator."""
    process, ready = start_emulator("--watch-pid", str(os.getpid()),
                                    "--config", json.dumps({"stepfunctions": {"execute_state_machine": True}}))
    url = f"http://127.0.0.1:{ready['port']}"
    try:
        account = _enforced_account(url)
        sqs = account.aws("sqs")
        queue = sqs.create_queue(QueueName="tokens")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        iam = account.aws("iam")
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        role = iam.create_role(RoleName="machine", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        iam.put_role_policy(RoleName="machine", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn}]}))
        definition = {"StartAt": "Wait", "States": {"Wait": {
            "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": True,
            "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}}}}}
        sfn = account.aws("stepfunctions")
        machine = sfn.create_state_machine(name="waits", definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
        messages = []
        for _ in range(50):  # the interpreter sends the token asynchronously
            messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
            if messages:
                break
        token = json.loads(messages[0]["Body"])["token"]
        grant = lambda resource: account.function_role(  # noqa: E731
            {"Effect": "Allow", "Action": "states:SendTaskSuccess", "Resource": resource})
        other_machine = machine.rsplit(":", 1)[0] + ":another"
        refusal = denied(lambda: grant(other_machine)("stepfunctions").send_task_success(taskToken=token, output="{}"))
        assert (refusal["code"], refusal["status"]) == ("AccessDeniedException", 400)
        assert f"is not authorized to perform: states:SendTaskSuccess on resource: {machine}" in refusal["message"]
        grant(machine)("stepfunctions").send_task_success(taskToken=token, output='{"resumed": true}')
        status = "RUNNING"
        for _ in range(100):  # the execution ends on the interpreter's thread
            status = sfn.describe_execution(executionArn=execution)["status"]
            if status != "RUNNING":
                break
            time.sleep(0.05)
        found = control.problems(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert not found, found
    assert status == "SUCCEEDED"


def test_a_partial_secret_arn_matches_only_with_the_random_suffix_wildcard(enforced):
    """The TiDBCloudApiKeySecretArn parameter may be a partial ARN (no random suffix): the
    template grants it and it followed by -??????, as the Secrets Manager guide recommends."""
    full = enforced.aws("secretsmanager").create_secret(Name=f"api-key-{random.randint(0, 10**6)}",
                                                        SecretString='{"public_key": "p", "private_key": "k"}')["ARN"]
    partial = full.rsplit("-", 1)[0]
    assert full != partial and len(full) - len(partial) == 7
    read = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue"}
    as_given = enforced.function_role({**read, "Resource": partial})
    as_template = enforced.function_role({**read, "Resource": [partial, f"{partial}-??????"]})

    assert denied(lambda: as_given("secretsmanager").get_secret_value(SecretId=full))["code"] == "AccessDeniedException"
    assert as_template("secretsmanager").get_secret_value(SecretId=full)["ARN"] == full
    assert as_template("secretsmanager").get_secret_value(SecretId=partial.rsplit(":", 1)[1])["ARN"] == full


def test_cluster_and_subnet_group_describes_are_authorized_on_their_arns(enforced):
    """DescribeDBClusters on `cluster:<id>` (or `cluster:*`), DescribeDBSubnetGroups on `subgrp:<name>`:
    a grant of the one kind does not cover the other, and a product call of either is mapped."""
    net = make_network(enforced.aws("ec2"))
    rds = enforced.aws("rds")
    rds.create_db_subnet_group(DBSubnetGroupName="grp", DBSubnetGroupDescription="t", SubnetIds=net["subnets"])
    rds.create_db_cluster(DBClusterIdentifier="orders", Engine="aurora-mysql", MasterUsername="admin",
                          MasterUserPassword="password123", DBSubnetGroupName="grp")
    prefix = f"arn:aws:rds:{REGION}:{enforced.id}"
    clusters_only = enforced.function_role(
        {"Effect": "Allow", "Action": "rds:DescribeDBClusters", "Resource": f"{prefix}:cluster:*"})("rds")
    groups_only = enforced.function_role(
        {"Effect": "Allow", "Action": "rds:DescribeDBSubnetGroups", "Resource": f"{prefix}:subgrp:*"})("rds")
    assert clusters_only.describe_db_clusters(DBClusterIdentifier="orders")["DBClusters"][0]["DBSubnetGroup"] == "grp"
    assert groups_only.describe_db_subnet_groups(DBSubnetGroupName="grp")["DBSubnetGroups"][0]["VpcId"] == net["vpc"]
    assert f"rds:DescribeDBSubnetGroups on resource: {prefix}:subgrp:grp" in denied(
        lambda: clusters_only.describe_db_subnet_groups(DBSubnetGroupName="grp"))["message"]
    assert f"rds:DescribeDBClusters on resource: {prefix}:cluster:orders" in denied(
        lambda: groups_only.describe_db_clusters(DBClusterIdentifier="orders"))["message"]


def test_dynamodb_item_calls_are_authorized_on_their_table(enforced):
    """The turn lease: PutItem on the stack's table only (DynamoDB names the table, not its ARN,
    in the request; the emulator keeps DynamoDB's JSON body parsed, which once crashed here)."""
    dynamodb = enforced.aws("dynamodb")
    key = {"AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
           "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}], "BillingMode": "PAY_PER_REQUEST"}
    ours = dynamodb.create_table(TableName="stack-TurnTable", **key)["TableDescription"]["TableArn"]
    dynamodb.create_table(TableName="other-table", **key)
    role = enforced.function_role({"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": ours})
    role("dynamodb").put_item(TableName="stack-TurnTable", Item={"k": {"S": "orders-db"}})
    refused = denied(lambda: role("dynamodb").put_item(TableName="other-table", Item={"k": {"S": "orders-db"}}))
    assert refused["code"] == "AccessDeniedException", refused
    assert f"dynamodb:PutItem on resource: arn:aws:dynamodb:{REGION}:{enforced.id}:table/other-table" in \
        refused["message"], refused
    assert denied(lambda: role("dynamodb").delete_item(TableName="stack-TurnTable",
                                                       Key={"k": {"S": "orders-db"}}))["code"] == "AccessDeniedException"


def test_a_rule_change_is_authorized_on_the_group_it_changes_not_the_group_it_names(enforced):
    ec2 = enforced.aws("ec2")
    net = make_network(ec2)
    mine = ec2.create_security_group(GroupName="g-own", Description="t", VpcId=net["vpc"], TagSpecifications=[
        {"ResourceType": "security-group", "Tags": [{"Key": MANAGED_BY, "Value": STACK}]}])["GroupId"]
    theirs = ec2.create_security_group(GroupName="g-customer", Description="t", VpcId=net["vpc"])["GroupId"]
    rule = [{"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "UserIdGroupPairs": [{"GroupId": theirs}]}]
    owned = {"StringEquals": {f"aws:ResourceTag/{MANAGED_BY}": STACK}}
    role = enforced.function_role({"Effect": "Allow", "Action": ["ec2:AuthorizeSecurityGroupEgress",
                                                                 "ec2:RevokeSecurityGroupEgress"],
                                   "Resource": f"arn:aws:ec2:{REGION}:{enforced.id}:security-group/*",
                                   "Condition": owned})("ec2")
    role.authorize_security_group_egress(GroupId=mine, IpPermissions=rule)
    role.revoke_security_group_egress(GroupId=mine, IpPermissions=rule)
    # The customer's untagged group, changed, is refused.
    refused = denied(lambda: role.authorize_security_group_egress(
        GroupId=theirs, IpPermissions=[{**rule[0], "UserIdGroupPairs": [{"GroupId": mine}]}]))
    assert refused["code"] == "UnauthorizedOperation", refused
