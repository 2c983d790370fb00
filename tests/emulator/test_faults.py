"""Fault injection through /_emulator/faults."""

from __future__ import annotations

import socket
import time
from typing import Any, Iterator

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

import control as control_routes
from conftest import make_network


def control(url: str, method: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    return control_routes.route(url, "/_emulator/faults", method, body)


@pytest.fixture
def arm(emulator) -> Iterator[Any]:
    """arm(*specs): the faults armed (refused specs fail the test); all disarmed afterwards."""
    def armed(*specs: dict[str, Any]) -> dict[str, Any]:
        status, body = control(emulator.url, "POST", {"faults": list(specs)})
        assert status == 200, body
        return body

    yield armed
    assert control(emulator.url, "DELETE") == (200, {"faults": []})


# One attempt only (the fixtures' clients retry once), so each call below is one request.
ONCE = Config(retries={"total_max_attempts": 1, "mode": "standard"})
ENTRY = {"Source": "test", "DetailType": "t", "Detail": "{}"}


def test_a_failed_entry_fault_fails_the_next_put_events_only(emulator, aws, arm) -> None:
    events = aws("events")
    arm({"action": "events:PutEvents", "fault": "failed-entry"})
    failed = events.put_events(Entries=[ENTRY, ENTRY])
    assert failed["FailedEntryCount"] == 2
    assert {e["ErrorCode"] for e in failed["Entries"]} == {"InternalFailure"}
    assert events.put_events(Entries=[ENTRY])["FailedEntryCount"] == 0
    [fault] = control(emulator.url, "GET")[1]["faults"]
    assert (fault["action"], fault["fault"], fault["count"], fault["fired"]) == ("events:PutEvents", "failed-entry", 1, 1)


def error_of(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value.response["Error"]["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


def group_names(ec2: Any, vpc: str) -> list[str]:
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    return sorted(g["GroupName"] for g in groups if g["GroupName"] != "default")


@pytest.mark.parametrize("fault, ec2_error, elbv2_error", [
    ("throttling", ("RequestLimitExceeded", 503), ("ThrottlingException", 400)),
    ("http-500", ("InternalError", 500), ("InternalFailure", 500)),
    ("http-503", ("Unavailable", 503), ("ServiceUnavailable", 503)),
])
def test_an_error_fault_fails_the_nth_call_in_the_services_shape_and_makes_no_change(
        aws, arm, fault, ec2_error, elbv2_error) -> None:
    ec2, elbv2 = aws("ec2", ONCE), aws("elbv2", ONCE)
    network = make_network(ec2)
    arm({"action": "ec2:CreateSecurityGroup", "fault": fault, "nth": 2, "count": 2},
        {"action": "elasticloadbalancing:CreateTargetGroup", "fault": fault})
    create = dict(Description="t", VpcId=network["vpc"])
    ec2.create_security_group(GroupName="first", **create)
    assert error_of(ec2.create_security_group, GroupName="second", **create) == ec2_error
    assert error_of(ec2.create_security_group, GroupName="third", **create) == ec2_error
    ec2.create_security_group(GroupName="fourth", **create)
    assert group_names(ec2, network["vpc"]) == sorted(["first", "fourth", network_group(ec2, network)])
    assert error_of(elbv2.create_target_group, Name="tg", Protocol="TCP", Port=4000, VpcId=network["vpc"],
                    TargetType="ip") == elbv2_error
    assert elbv2.describe_target_groups()["TargetGroups"] == []


def network_group(ec2: Any, network: dict[str, Any]) -> str:
    return ec2.describe_security_groups(GroupIds=[network["sg"]])["SecurityGroups"][0]["GroupName"]


def test_a_fault_for_seconds_fails_every_matching_call_in_that_window(aws, arm) -> None:
    ec2 = aws("ec2", ONCE)
    arm({"action": "ec2:CreateVpc", "fault": "http-503", "seconds": 60})
    for block in ("10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"):
        assert error_of(ec2.create_vpc, CidrBlock=block) == ("Unavailable", 503)
    [fault] = control_routes.route(ec2.meta.endpoint_url, "/_emulator/faults")[1]["faults"]
    assert (fault["seen"], fault["fired"]) == (3, 3)
    assert ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]  # another action: untouched


def test_a_fault_with_a_role_meets_only_that_roles_calls(emulator, aws, arm) -> None:
    ec2 = aws("ec2", ONCE)  # the account's administrator role
    network = make_network(ec2)
    arm({"action": "ec2:CreateSecurityGroup", "fault": "http-500", "role": "SomeoneElsesRole"})
    ec2.create_security_group(GroupName="not-theirs", Description="t", VpcId=network["vpc"])
    arm({"action": "ec2:CreateSecurityGroup", "fault": "http-500", "role": "OrganizationAccountAccessRole"})
    assert error_of(ec2.create_security_group, GroupName="ours", Description="t", VpcId=network["vpc"]) == (
        "InternalError", 500)


def test_an_action_is_named_by_its_operation_or_its_iam_action(aws, arm) -> None:
    lam = aws("lambda", ONCE)
    arm({"action": "lambda:InvokeFunction", "fault": "http-503"})
    assert error_of(lam.invoke, FunctionName="nothing-here") == ("ServiceUnavailable", 503)


def test_applied_then_dropped_makes_the_change_and_answers_nothing(aws, arm) -> None:
    ec2 = aws("ec2", ONCE)
    network = make_network(ec2)
    arm({"action": "ec2:CreateSecurityGroup", "fault": "applied-then-dropped"})
    create = dict(GroupName="lost-answer", Description="t", VpcId=network["vpc"])
    with pytest.raises(ConnectionClosedError):
        ec2.create_security_group(**create)
    assert "lost-answer" in group_names(ec2, network["vpc"])
    # The caller's retry meets what AWS answers a repeated create.
    assert error_of(ec2.create_security_group, **create) == ("InvalidGroup.Duplicate", 400)


def test_a_repeated_rule_is_refused_as_a_duplicate_both_ways(aws) -> None:
    ec2 = aws("ec2")
    group = make_network(ec2)["sg"]
    rule = [{"IpProtocol": "tcp", "FromPort": 4000, "ToPort": 4000, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=rule)
    ec2.authorize_security_group_egress(GroupId=group, IpPermissions=rule)
    assert error_of(ec2.authorize_security_group_ingress, GroupId=group, IpPermissions=rule) == (
        "InvalidPermission.Duplicate", 400)
    assert error_of(ec2.authorize_security_group_egress, GroupId=group, IpPermissions=rule) == (
        "InvalidPermission.Duplicate", 400)


def test_hang_holds_the_call_until_the_client_gives_up_and_makes_no_change(emulator, aws, arm) -> None:
    ec2 = aws("ec2", Config(read_timeout=1, connect_timeout=2, retries={"total_max_attempts": 1, "mode": "standard"}))
    network = make_network(ec2)
    arm({"action": "ec2:CreateSecurityGroup", "fault": "hang", "hold": 120})
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        ec2.create_security_group(GroupName="held", Description="t", VpcId=network["vpc"])
    assert time.monotonic() - started < 60
    assert "held" not in group_names(ec2, network["vpc"])
    ec2.create_security_group(GroupName="after", Description="t", VpcId=network["vpc"])


def test_hang_is_bounded_by_hold_when_the_client_never_gives_up(emulator, arm) -> None:
    arm({"action": "sts:GetCallerIdentity", "fault": "hang", "hold": 1})
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=30) as client:
        client.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       b"Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/sts/aws4_request, "
                       b"SignedHeaders=host, Signature=0\r\n"
                       b"Content-Length: 43\r\n\r\nAction=GetCallerIdentity&Version=2011-06-15")
        started = time.monotonic()
        assert client.recv(1024) == b""  # closed, unanswered
        assert 0.5 < time.monotonic() - started < 20
    assert control(emulator.url, "GET")[1]["faults"][0]["fired"] == 1


@pytest.mark.parametrize("spec", [
    {"action": "events:PutEvents", "fault": "melt"},
    {"action": "ec2:CreateVpc", "fault": "failed-entry"},
    {"fault": "failed-entry"},
    {"action": "events:PutEvents", "fault": "failed-entry", "count": "many"},
    {"action": "ec2:CreateVpc", "fault": "http-500", "count": 0},
    {"action": "ec2:CreateVpc", "fault": "http-500", "nth": 1.5},
    {"action": "ec2:CreateVpc", "fault": "http-500", "hold": 3},
    {"action": "ec2:CreateVpc", "fault": "hang", "hold": 3600},
    {"action": "ec2:CreateVpc", "fault": "hang", "wait": 3},
    {"action": "CreateVpc", "fault": "throttling"},
    {"action": "ec2:CreateVpc", "fault": "throttling", "role": "arn:aws:iam::123456789012:role/r"},
    "ec2:CreateVpc",
])
def test_a_bad_fault_is_refused_by_name_and_arms_nothing(emulator, spec) -> None:
    status, body = control(emulator.url, "POST", {"faults": [spec]})
    assert status == 400 and body["message"], body
    assert control(emulator.url, "GET")[1]["faults"] == []


@pytest.mark.parametrize("body", [[], {"faults": "ec2:CreateVpc"}])
def test_a_bad_body_is_refused(emulator, body) -> None:
    status, answer = control(emulator.url, "POST", body)
    assert status == 400 and answer["message"], answer
