"""Endpoint service configurations and their connection notifications."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError
from conftest import make_network
from test_elbv2 import error_code, nlb


def endpoint_service(aws, acceptance=True, tags=None, **extra):
    ec2 = aws("ec2")
    net = make_network(ec2)
    arn = nlb(aws("elbv2"), net, name=f"nlb-{len(ec2.describe_vpcs()['Vpcs'])}")["LoadBalancerArn"]
    kwargs = dict(NetworkLoadBalancerArns=[arn], AcceptanceRequired=acceptance, **extra)
    if tags:
        kwargs["TagSpecifications"] = [{"ResourceType": "vpc-endpoint-service", "Tags": tags}]
    return ec2.create_vpc_endpoint_service_configuration(**kwargs)["ServiceConfiguration"]


def topic(aws, name="vpce-events"):
    return aws("sns").create_topic(Name=name)["TopicArn"]


def test_service_ids_look_like_aws(aws):
    service = endpoint_service(aws)
    assert re.fullmatch(r"vpce-svc-[0-9a-f]{17}", service["ServiceId"])
    assert service["ServiceName"] == f"com.amazonaws.vpce.us-east-1.{service['ServiceId']}"


def test_client_token_is_idempotent(aws):
    ec2 = aws("ec2")
    first = endpoint_service(aws, ClientToken="tok-1")
    arn = first["NetworkLoadBalancerArns"][0]
    again = ec2.create_vpc_endpoint_service_configuration(NetworkLoadBalancerArns=[arn], ClientToken="tok-1")
    assert again["ServiceConfiguration"]["ServiceId"] == first["ServiceId"]
    assert again["ClientToken"] == "tok-1"
    other = ec2.create_vpc_endpoint_service_configuration(NetworkLoadBalancerArns=[arn], ClientToken="tok-2")
    assert other["ServiceConfiguration"]["ServiceId"] != first["ServiceId"]
    assert len(ec2.describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]) == 2


def test_describe_configurations_honours_filters(aws):
    ec2 = aws("ec2")
    tagged = endpoint_service(aws, tags=[{"Key": "rds-instance", "Value": "orders"}])
    plain = endpoint_service(aws)

    def ids(filters):
        found = ec2.describe_vpc_endpoint_service_configurations(Filters=filters)["ServiceConfigurations"]
        return sorted(s["ServiceId"] for s in found)

    assert ids([{"Name": "service-id", "Values": [plain["ServiceId"]]}]) == [plain["ServiceId"]]
    assert ids([{"Name": "service-name", "Values": [tagged["ServiceName"]]}]) == [tagged["ServiceId"]]
    assert ids([{"Name": "tag:rds-instance", "Values": ["orders"]}]) == [tagged["ServiceId"]]
    assert ids([{"Name": "tag:rds-instance", "Values": ["other"]}]) == []
    assert ids([{"Name": "tag-key", "Values": ["rds-instance"]}]) == [tagged["ServiceId"]]
    assert ids([{"Name": "service-state", "Values": ["Available"]}]) == sorted([tagged["ServiceId"], plain["ServiceId"]])
    with pytest.raises(ClientError):
        ids([{"Name": "no-such-filter", "Values": ["x"]}])


def test_notification_lifecycle(aws):
    ec2 = aws("ec2")
    service = endpoint_service(aws)
    topic_arn = topic(aws)
    created = ec2.create_vpc_endpoint_connection_notification(
        ServiceId=service["ServiceId"], ConnectionNotificationArn=topic_arn,
        ConnectionEvents=["Connect", "Accept", "Reject", "Delete"],
    )["ConnectionNotification"]
    nid = created["ConnectionNotificationId"]
    assert re.fullmatch(r"vpce-nfn-[0-9a-f]{17}", nid)
    assert created["ServiceId"] == service["ServiceId"]
    assert created["ConnectionNotificationType"] == "Topic"
    assert created["ConnectionNotificationState"] == "Enabled"
    assert created["ConnectionNotificationArn"] == topic_arn
    assert created["ConnectionEvents"] == ["Connect", "Accept", "Reject", "Delete"]

    def describe(**kwargs):
        return ec2.describe_vpc_endpoint_connection_notifications(**kwargs)["ConnectionNotificationSet"]

    assert [n["ConnectionNotificationId"] for n in describe(ConnectionNotificationId=nid)] == [nid]
    for name, value in [
        ("service-id", service["ServiceId"]), ("connection-notification-arn", topic_arn),
        ("connection-notification-id", nid), ("connection-notification-state", "Enabled"),
        ("connection-notification-type", "Topic"),
    ]:
        assert [n["ConnectionNotificationId"] for n in describe(Filters=[{"Name": name, "Values": [value]}])] == [nid]
    assert describe(Filters=[{"Name": "service-id", "Values": ["vpce-svc-00000000000000000"]}]) == []

    other_topic = topic(aws, "other")
    assert ec2.modify_vpc_endpoint_connection_notification(
        ConnectionNotificationId=nid, ConnectionNotificationArn=other_topic, ConnectionEvents=["Accept"]
    )["ReturnValue"] is True
    [modified] = describe(ConnectionNotificationId=nid)
    assert modified["ConnectionNotificationArn"] == other_topic and modified["ConnectionEvents"] == ["Accept"]

    gone = ec2.delete_vpc_endpoint_connection_notifications(ConnectionNotificationIds=[nid, "vpce-nfn-00000000000000000"])
    assert [(u["ResourceId"], u["Error"]["Code"]) for u in gone["Unsuccessful"]] == [
        ("vpce-nfn-00000000000000000", "InvalidConnectionNotification")
    ]
    assert describe() == []
    with pytest.raises(ClientError) as err:
        describe(ConnectionNotificationId=nid)
    assert error_code(err) == "InvalidConnectionNotification"


def test_notification_validation(aws):
    ec2 = aws("ec2")
    service = endpoint_service(aws)
    topic_arn = topic(aws)
    with pytest.raises(ClientError) as err:
        ec2.create_vpc_endpoint_connection_notification(
            ServiceId="vpce-svc-00000000000000000", ConnectionNotificationArn=topic_arn, ConnectionEvents=["Connect"]
        )
    assert error_code(err) == "InvalidVpcEndpointServiceId.NotFound"
    with pytest.raises(ClientError) as err:
        ec2.create_vpc_endpoint_connection_notification(
            ServiceId=service["ServiceId"],
            ConnectionNotificationArn=f"arn:aws:sns:us-east-1:{aws.account}:missing",
            ConnectionEvents=["Connect"],
        )
    assert error_code(err) == "InvalidParameter"
    with pytest.raises(ClientError) as err:
        ec2.create_vpc_endpoint_connection_notification(
            ServiceId=service["ServiceId"], ConnectionNotificationArn=topic_arn, ConnectionEvents=["Explode"]
        )
    assert error_code(err) == "InvalidParameterValue"


def test_notification_client_token_and_service_delete(aws):
    ec2 = aws("ec2")
    service = endpoint_service(aws)
    kwargs = dict(
        ServiceId=service["ServiceId"], ConnectionNotificationArn=topic(aws),
        ConnectionEvents=["Connect"], ClientToken="same",
    )
    first = ec2.create_vpc_endpoint_connection_notification(**kwargs)
    second = ec2.create_vpc_endpoint_connection_notification(**kwargs)
    assert first["ConnectionNotification"]["ConnectionNotificationId"] == second["ConnectionNotification"]["ConnectionNotificationId"]
    assert second["ClientToken"] == "same"
    assert len(ec2.describe_vpc_endpoint_connection_notifications()["ConnectionNotificationSet"]) == 1

    out = ec2.delete_vpc_endpoint_service_configurations(ServiceIds=[service["ServiceId"]])
    assert out["Unsuccessful"] == []
    assert ec2.describe_vpc_endpoint_connection_notifications()["ConnectionNotificationSet"] == []
