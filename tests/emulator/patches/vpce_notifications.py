"""VPC endpoint connection notifications (stock moto: HTTP 500 for all four).

Create / Describe / Modify / DeleteVpcEndpointConnectionNotification(s), with
AWS's shapes: ``vpce-nfn-<17 hex>`` ids, type ``Topic``, state ``Enabled``.
Create validates the endpoint service (or endpoint) and the SNS topic, and a
repeated ClientToken returns the first notification. ``publish()`` delivers an
event through moto's SNS backend; vpce_connections calls it on Connect, Accept,
Reject and Delete.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidFilter,
    InvalidVpcEndPointIdError,
    MissingParameterError,
    UnknownVpcEndpointService,
)
from moto.ec2.responses import EC2Response

from ._common import STATE_LOCK, log, random_hex, state

EVENTS = ("Accept", "Connect", "Delete", "Reject")
_TOPIC_ARN = re.compile(r"^arn:aws[\w-]*:sns:([a-z0-9-]+):(\d{12}):([\w-]+)$")


class Notification:
    def __init__(self, region: str, service_id: str | None, vpc_endpoint_id: str | None,
                 topic_arn: str, events: list[str]):
        self.id = f"vpce-nfn-{random_hex(17)}"
        self.region = region
        self.service_id = service_id
        self.vpc_endpoint_id = vpc_endpoint_id
        self.topic_arn = topic_arn
        self.events = list(events)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ConnectionNotificationId": self.id,
            "ConnectionNotificationType": "Topic",
            "ConnectionNotificationArn": self.topic_arn,
            "ConnectionEvents": self.events,
            "ConnectionNotificationState": "Enabled",
        }
        if self.service_id:
            out["ServiceId"] = self.service_id
            out["ServiceRegion"] = self.region
        if self.vpc_endpoint_id:
            out["VpcEndpointId"] = self.vpc_endpoint_id
        return out


def notifications(ec2_backend: Any) -> dict[str, Notification]:
    return state(ec2_backend, "_emulator_notifications", dict)


def _tokens(ec2_backend: Any) -> dict[str, str]:
    return state(ec2_backend, "_emulator_notification_tokens", dict)


def _find_topic(topic_arn: str) -> Any | None:
    match = _TOPIC_ARN.match(topic_arn or "")
    if not match:
        return None
    from moto.sns.models import sns_backends

    region, account = match.group(1), match.group(2)
    if account not in sns_backends or region not in sns_backends[account].keys():
        return None
    return sns_backends[account][region].topics.get(topic_arn)


def _check_topic(topic_arn: str) -> None:
    # AWS documents no error code for this; InvalidParameter is our reading.
    if _find_topic(topic_arn) is None:
        raise EC2ClientError(
            "InvalidParameter", f"The SNS topic '{topic_arn}' does not exist or is not a valid topic ARN."
        )


def _check_events(events: list[str]) -> None:
    if not events:
        raise MissingParameterError("ConnectionEvents")
    for event in events:
        if event not in EVENTS:
            raise EC2ClientError(
                "InvalidParameterValue",
                f"Invalid connection event '{event}'. Valid events are Accept, Connect, Delete and Reject.",
            )


def _get(ec2_backend: Any, notification_id: str) -> Notification:
    found = notifications(ec2_backend).get(notification_id)
    if found is None:
        # The code the AWS SDKs / Terraform treat as "not found" here.
        raise EC2ClientError(
            "InvalidConnectionNotification",
            f"The connection notification '{notification_id}' does not exist.",
        )
    return found


def forget_service(ec2_backend: Any, service_id: str) -> None:
    """AWS deletes a service's notifications with the service."""
    with STATE_LOCK:
        store = notifications(ec2_backend)
        for key in [k for k, n in store.items() if n.service_id == service_id]:
            del store[key]


def forget_endpoint(ec2_backend: Any, vpc_endpoint_id: str) -> None:
    with STATE_LOCK:
        store = notifications(ec2_backend)
        for key in [k for k, n in store.items() if n.vpc_endpoint_id == vpc_endpoint_id]:
            del store[key]


def pending_messages(event: str, config: Any, endpoint: Any, endpoint_state: str) -> list[tuple[str, str, str]]:
    """(topic ARN, subject, message) for every notification wanting ``event``.

    Computed under the caller's lock; sent later by ``send()`` without it,
    because SNS delivers synchronously (an HTTP subscriber may call back into
    the emulator).

    AWS does not document the message body. This one is an approximation:
    treat it as a trigger and read the truth with DescribeVpcEndpointConnections.
    """
    owner_backend = config.ec2_backend
    consumer_backend = endpoint.ec2_backend
    wanted = [
        n for n in list(notifications(owner_backend).values())
        if n.service_id == config.id and event in n.events
    ] + [
        n for n in list(notifications(consumer_backend).values())
        if n.vpc_endpoint_id == endpoint.id and event in n.events
    ]
    out = []
    for notification in wanted:
        body = {
            "connectionNotificationId": notification.id,
            "eventType": event,
            "serviceId": config.id,
            "serviceName": config.service_name,
            "serviceOwner": owner_backend.account_id,
            "endpointId": endpoint.id,
            "vpcEndpointId": endpoint.id,
            "vpcEndpointOwner": consumer_backend.account_id,
            "endpointState": endpoint_state,
            "vpcEndpointState": endpoint_state,
            "region": owner_backend.region_name,
            "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        subject = f"VPC Endpoint Connection Notification: {event} {endpoint.id}"
        out.append((notification.topic_arn, subject, json.dumps(body)))
    return out


def send(messages: list[tuple[str, str, str]]) -> None:
    from moto.sns.models import sns_backends

    for topic_arn, subject, message in messages:
        match = _TOPIC_ARN.match(topic_arn)
        if not match:
            continue
        try:
            sns_backends[match.group(2)][match.group(1)].publish(message=message, arn=topic_arn, subject=subject)
        except Exception:  # AWS never fails the EC2 call over a notification
            log.exception("vpce: publishing to %s failed", topic_arn)


# --- API handlers (plain functions: moto dispatches on class functions) ---


def create_vpc_endpoint_connection_notification(self: EC2Response) -> ActionResult:
    service_id = self._get_param("ServiceId")
    endpoint_id = self._get_param("VpcEndpointId")
    topic_arn = self._get_param("ConnectionNotificationArn")
    events = self._get_param("ConnectionEvents", []) or []
    token = self._get_param("ClientToken")
    backend = self.ec2_backend
    if token and token in _tokens(backend) and _tokens(backend)[token] in notifications(backend):
        existing = notifications(backend)[_tokens(backend)[token]]
        return ActionResult({"ConnectionNotification": existing.to_dict(), "ClientToken": token})
    if not service_id and not endpoint_id:
        raise MissingParameterError("ServiceId")
    if service_id and endpoint_id:
        raise EC2ClientError("InvalidParameterCombination", "Specify either ServiceId or VpcEndpointId, not both.")
    if service_id and service_id not in backend.configurations:
        raise UnknownVpcEndpointService(service_id)
    if endpoint_id and endpoint_id not in backend.vpc_end_points:
        raise InvalidVpcEndPointIdError(endpoint_id)
    if not topic_arn:
        raise MissingParameterError("ConnectionNotificationArn")
    _check_events(events)
    _check_topic(topic_arn)
    notification = Notification(backend.region_name, service_id, endpoint_id, topic_arn, events)
    with STATE_LOCK:
        notifications(backend)[notification.id] = notification
        if token:
            _tokens(backend)[token] = notification.id
    result: dict[str, Any] = {"ConnectionNotification": notification.to_dict()}
    if token:
        result["ClientToken"] = token
    return ActionResult(result)


_FILTERS = {
    "connection-notification-arn": lambda n: n.topic_arn,
    "connection-notification-id": lambda n: n.id,
    "connection-notification-state": lambda n: "Enabled",
    "connection-notification-type": lambda n: "Topic",
    "service-id": lambda n: n.service_id,
    "vpc-endpoint-id": lambda n: n.vpc_endpoint_id,
}


def describe_vpc_endpoint_connection_notifications(self: EC2Response) -> ActionResult:
    backend = self.ec2_backend
    notification_id = self._get_param("ConnectionNotificationId")
    filters = self._filters_from_querystring()
    for name in filters:
        if name not in _FILTERS:
            raise InvalidFilter(name)
    if notification_id:
        found = [_get(backend, notification_id)]
    else:
        found = list(notifications(backend).values())
    found = [n for n in found if all(_FILTERS[k](n) in v for k, v in filters.items())]
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 1000)
    page = found[start : start + size]
    result: dict[str, Any] = {"ConnectionNotificationSet": [n.to_dict() for n in page]}
    if start + size < len(found):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


def modify_vpc_endpoint_connection_notification(self: EC2Response) -> ActionResult:
    notification = _get(self.ec2_backend, self._get_param("ConnectionNotificationId"))
    topic_arn = self._get_param("ConnectionNotificationArn")
    events = self._get_param("ConnectionEvents")
    if topic_arn:
        _check_topic(topic_arn)
    if events:
        _check_events(events)
    with STATE_LOCK:
        if topic_arn:
            notification.topic_arn = topic_arn
        if events:
            notification.events = list(events)
    return ActionResult({"ReturnValue": True})


def delete_vpc_endpoint_connection_notifications(self: EC2Response) -> ActionResult:
    store = notifications(self.ec2_backend)
    unsuccessful = []
    with STATE_LOCK:
        for notification_id in self._get_param("ConnectionNotificationIds", []) or []:
            if store.pop(notification_id, None) is None:
                unsuccessful.append({
                    "ResourceId": notification_id,
                    "Error": {
                        "Code": "InvalidConnectionNotification",
                        "Message": f"The connection notification '{notification_id}' does not exist.",
                    },
                })
    return ActionResult({"Unsuccessful": unsuccessful})


def apply() -> None:
    for handler in (
        create_vpc_endpoint_connection_notification,
        describe_vpc_endpoint_connection_notifications,
        modify_vpc_endpoint_connection_notification,
        delete_vpc_endpoint_connection_notifications,
    ):
        setattr(EC2Response, handler.__name__, handler)
