"""Cross-account PrivateLink: endpoint -> pendingAcceptance -> accept/reject,
with notifications through SNS."""

from __future__ import annotations

import ipaddress
import json
import os
import time

import pytest
from botocore.exceptions import ClientError
from conftest import make_network, new_account
from test_elbv2 import error_code
from test_vpce_services import endpoint_service


def subscribed_queue(aws, topic_arn):
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName="vpce-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return sqs, url


def drain(sqs, url):
    out = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return out
        out += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in batch])


def consumer_endpoint(factory, service_name, zones=(("10.30.1.0/24", "us-east-1a"),)):
    ec2 = factory("ec2")
    net = make_network(ec2, cidr="10.30.0.0/16", subnets=zones)
    endpoint = ec2.create_vpc_endpoint(
        VpcEndpointType="Interface", VpcId=net["vpc"], ServiceName=service_name,
        SubnetIds=net["subnets"], SecurityGroupIds=[net["sg"]],
    )["VpcEndpoint"]
    return endpoint, net


def test_cross_account_connection_lifecycle(aws, other_aws):
    provider_ec2 = aws("ec2")
    service = endpoint_service(aws)
    sid, name = service["ServiceId"], service["ServiceName"]
    topic_arn = aws("sns").create_topic(Name="vpce")["TopicArn"]
    # AWS publishes the notifications as vpce.amazonaws.com: the topic policy must admit it.
    aws("sns").set_topic_attributes(TopicArn=topic_arn, AttributeName="Policy", AttributeValue=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "vpce.amazonaws.com"},
                                                "Action": "sns:Publish", "Resource": topic_arn}]}))
    sqs, queue = subscribed_queue(aws, topic_arn)
    provider_ec2.create_vpc_endpoint_connection_notification(
        ServiceId=sid, ConnectionNotificationArn=topic_arn, ConnectionEvents=["Connect", "Accept", "Reject", "Delete"]
    )

    # Not allowed yet: the consumer cannot see or use the service.
    with pytest.raises(ClientError) as err:
        consumer_endpoint(other_aws, name)
    assert error_code(err) == "InvalidServiceName"
    with pytest.raises(ClientError) as err:
        other_aws("ec2").describe_vpc_endpoint_services(ServiceNames=[name])
    assert error_code(err) == "InvalidServiceName"

    provider_ec2.modify_vpc_endpoint_service_permissions(
        ServiceId=sid, AddAllowedPrincipals=[f"arn:aws:iam::{other_aws.account}:root"]
    )
    [detail] = other_aws("ec2").describe_vpc_endpoint_services(ServiceNames=[name])["ServiceDetails"]
    assert detail["Owner"] == aws.account and detail["ServiceId"] == sid

    endpoint, net = consumer_endpoint(other_aws, name)
    vpce = endpoint["VpcEndpointId"]
    assert endpoint["State"] == "pendingAcceptance"
    dns = endpoint["DnsEntries"][0]["DnsName"]
    assert dns.startswith(f"{vpce}-") and dns.endswith(f".{sid}.us-east-1.vpce.amazonaws.com")
    eni = other_aws("ec2").describe_network_interfaces(NetworkInterfaceIds=endpoint["NetworkInterfaceIds"])["NetworkInterfaces"][0]
    assert ipaddress.ip_address(eni["PrivateIpAddress"]) in ipaddress.ip_network("10.30.1.0/24")

    [conn] = provider_ec2.describe_vpc_endpoint_connections(
        Filters=[{"Name": "vpc-endpoint-state", "Values": ["pendingAcceptance"]}]
    )["VpcEndpointConnections"]
    assert conn["VpcEndpointId"] == vpce and conn["VpcEndpointOwner"] == other_aws.account
    assert conn["ServiceId"] == sid and conn["VpcEndpointState"] == "pendingAcceptance"
    assert conn["NetworkLoadBalancerArns"] == service["NetworkLoadBalancerArns"]
    assert conn["VpcEndpointConnectionId"].startswith("vpce-con-") and conn["CreationTimestamp"]
    for name_, value in [("service-id", sid), ("vpc-endpoint-id", vpce), ("vpc-endpoint-owner", other_aws.account)]:
        assert len(provider_ec2.describe_vpc_endpoint_connections(
            Filters=[{"Name": name_, "Values": [value]}])["VpcEndpointConnections"]) == 1
    assert provider_ec2.describe_vpc_endpoint_connections(
        Filters=[{"Name": "vpc-endpoint-state", "Values": ["available"]}])["VpcEndpointConnections"] == []

    # Accept: pendingAcceptance -> pending (for longer than this test runs), on both sides.
    assert provider_ec2.accept_vpc_endpoint_connections(ServiceId=sid, VpcEndpointIds=[vpce])["Unsuccessful"] == []
    [seen] = other_aws("ec2").describe_vpc_endpoints(VpcEndpointIds=[vpce])["VpcEndpoints"]
    assert seen["State"] == "pending"
    [conn] = provider_ec2.describe_vpc_endpoint_connections(
        Filters=[{"Name": "vpc-endpoint-id", "Values": [vpce]}])["VpcEndpointConnections"]
    assert conn["VpcEndpointState"] == "pending"
    again = provider_ec2.accept_vpc_endpoint_connections(ServiceId=sid, VpcEndpointIds=[vpce, "vpce-00000000000000000"])
    assert {u["ResourceId"]: u["Error"]["Code"] for u in again["Unsuccessful"]} == {
        vpce: "InvalidState", "vpce-00000000000000000": "InvalidVpcEndpointId.NotFound"
    }

    # A live connection keeps the service from being deleted.
    refused = provider_ec2.delete_vpc_endpoint_service_configurations(ServiceIds=[sid])["Unsuccessful"]
    assert [u["Error"]["Code"] for u in refused] == ["ExistingVpcEndpointConnections"]

    # Reject an accepted connection, then the consumer deletes its endpoint.
    assert provider_ec2.reject_vpc_endpoint_connections(ServiceId=sid, VpcEndpointIds=[vpce])["Unsuccessful"] == []
    assert other_aws("ec2").describe_vpc_endpoints(VpcEndpointIds=[vpce])["VpcEndpoints"][0]["State"] == "rejected"
    other_aws("ec2").delete_vpc_endpoints(VpcEndpointIds=[vpce])
    [conn] = provider_ec2.describe_vpc_endpoint_connections()["VpcEndpointConnections"]
    assert conn["VpcEndpointState"] == "deleted"

    events = drain(sqs, queue)
    assert [(e["eventType"], e["endpointState"]) for e in events] == [
        ("Connect", "pendingAcceptance"), ("Accept", "pending"), ("Reject", "rejected"), ("Delete", "deleted")
    ]
    assert {e["vpcEndpointId"] for e in events} == {vpce}
    assert {e["serviceId"] for e in events} == {sid}
    assert provider_ec2.delete_vpc_endpoint_service_configurations(ServiceIds=[sid])["Unsuccessful"] == []


def test_a_third_account_stays_out(aws, other_aws, session_for):
    from conftest import new_account

    service = endpoint_service(aws)
    aws("ec2").modify_vpc_endpoint_service_permissions(
        ServiceId=service["ServiceId"], AddAllowedPrincipals=[f"arn:aws:iam::{other_aws.account}:root"]
    )
    with pytest.raises(ClientError) as err:
        consumer_endpoint(session_for(new_account()), service["ServiceName"])
    assert error_code(err) == "InvalidServiceName"
    with pytest.raises(ClientError) as err:
        consumer_endpoint(other_aws, service["ServiceName"].replace("vpce-svc-", "vpce-svc-f"))
    assert error_code(err) == "InvalidServiceName"


def test_no_acceptance_required_is_available_at_once(aws, other_aws):
    service = endpoint_service(aws, acceptance=False)
    aws("ec2").modify_vpc_endpoint_service_permissions(ServiceId=service["ServiceId"], AddAllowedPrincipals=["*"])
    endpoint, _ = consumer_endpoint(other_aws, service["ServiceName"])
    assert endpoint["State"] == "available"
    [conn] = aws("ec2").describe_vpc_endpoint_connections()["VpcEndpointConnections"]
    assert conn["VpcEndpointState"] == "available"


def test_reject_pending_and_unknown_service(aws, other_aws):
    ec2 = aws("ec2")
    service = endpoint_service(aws)
    ec2.modify_vpc_endpoint_service_permissions(
        ServiceId=service["ServiceId"], AddAllowedPrincipals=[f"arn:aws:iam::{other_aws.account}:*"]
    )
    vpce = consumer_endpoint(other_aws, service["ServiceName"])[0]["VpcEndpointId"]
    assert ec2.reject_vpc_endpoint_connections(ServiceId=service["ServiceId"], VpcEndpointIds=[vpce])["Unsuccessful"] == []
    out = ec2.accept_vpc_endpoint_connections(ServiceId=service["ServiceId"], VpcEndpointIds=[vpce])
    assert [u["Error"]["Code"] for u in out["Unsuccessful"]] == ["InvalidState"]
    # A rejected connection does not block deleting the service.
    with pytest.raises(ClientError) as err:
        other_aws("ec2").accept_vpc_endpoint_connections(ServiceId=service["ServiceId"], VpcEndpointIds=[vpce])
    assert error_code(err) == "InvalidVpcEndpointServiceId.NotFound"  # only the owner can accept
    assert ec2.delete_vpc_endpoint_service_configurations(ServiceIds=[service["ServiceId"]])["Unsuccessful"] == []


def test_subnet_outside_the_service_zones_is_refused(aws, other_aws):
    service = endpoint_service(aws)  # NLB in us-east-1a and us-east-1b
    aws("ec2").modify_vpc_endpoint_service_permissions(ServiceId=service["ServiceId"], AddAllowedPrincipals=["*"])
    with pytest.raises(ClientError) as err:
        consumer_endpoint(other_aws, service["ServiceName"], zones=(("10.30.3.0/24", "us-east-1c"),))
    assert error_code(err) == "InvalidParameter"


def test_an_accepted_connection_is_pending_then_available(monkeypatch):
    """AWS: pendingAcceptance -> pending -> available after AcceptVpcEndpointConnections."""
    from conftest import session_factory, start_emulator

    monkeypatch.setenv("EMULATOR_ACCEPT_PENDING_SECONDS", "1")
    process, ready = start_emulator("--watch-pid", str(os.getpid()))
    try:
        factory = session_factory(f"http://127.0.0.1:{ready['port']}")
        provider, consumer = factory(new_account()), factory(new_account())
        service = endpoint_service(provider)
        provider("ec2").modify_vpc_endpoint_service_permissions(
            ServiceId=service["ServiceId"], AddAllowedPrincipals=["*"])
        endpoint, _ = consumer_endpoint(consumer, service["ServiceName"])
        vpce = endpoint["VpcEndpointId"]
        provider("ec2").accept_vpc_endpoint_connections(ServiceId=service["ServiceId"], VpcEndpointIds=[vpce])
        state = lambda: consumer("ec2").describe_vpc_endpoints(VpcEndpointIds=[vpce])["VpcEndpoints"][0]["State"]  # noqa: E731
        assert state() == "pending"
        seen = {state()}
        deadline = time.time() + 10
        while time.time() < deadline and "available" not in seen:
            time.sleep(0.1)
            seen.add(state())
        assert seen == {"pending", "available"}
        [conn] = provider("ec2").describe_vpc_endpoint_connections()["VpcEndpointConnections"]
        assert conn["VpcEndpointState"] == "available"
    finally:
        process.terminate()
        process.wait(timeout=10)
