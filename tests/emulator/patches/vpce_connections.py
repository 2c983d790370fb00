"""PrivateLink connections between a consumer's endpoint and a provider's service.

Stock moto never links an interface endpoint to the service: any account may
create one, even for a bogus name, and it is ``available`` at once; the
provider has no Describe/Accept/RejectVpcEndpointConnections (HTTP 500).

Here, CreateVpcEndpoint for a ``com.amazonaws.vpce.<region>.vpce-svc-...`` name:
  * finds the service in any account of that region; ``InvalidServiceName``
    unless the caller owns it or is an allowed principal;
  * ``InvalidParameter`` when a subnet's AZ (by AZ ID) is not one of the
    service's NLB AZs, as AWS refuses;
  * records a connection ``pendingAcceptance`` (AcceptanceRequired) or
    ``available``; the consumer's endpoint state mirrors it;
  * gives the endpoint's ENIs addresses inside their subnets and AWS-shaped
    DNS names;
  * publishes ``Connect`` to matching connection notifications.
Accept (pendingAcceptance -> pending -> available), Reject (pendingAcceptance|
pending|available -> rejected) and the consumer's DeleteVpcEndpoints (-> deleted)
publish Accept, Reject, Delete.

An accepted connection is ``pending`` before it is ``available``, as in AWS
(AcceptVpcEndpointConnections; "Accept or reject connection requests" in the
PrivateLink guide: from seconds to minutes). Here it stays ``pending`` for
``EMULATOR_ACCEPT_PENDING_SECONDS`` (default 5, read at each accept; 0 skips
``pending``), long enough that one run of the acceptor never sees ``available``.
"""

from __future__ import annotations

import datetime
import os
import random
import string
import time
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, InvalidFilter, InvalidServiceName
from moto.ec2.models.vpcs import VPCBackend
from moto.ec2.responses import EC2Response

from . import vpce_notifications
from ._common import STATE_LOCK, allocate_ip, random_hex, release_ip, set_eni_ip, wrap
from .vpce_services import allows, connections, find_service_by_name

# Route 53 zone AWS uses for vpce DNS names in us-east-1; one value for all
# regions here (the project never resolves these names).
VPCE_HOSTED_ZONE_ID = "Z7HUB22UULQXV"

DEFAULT_PENDING_SECONDS = 5.0


def pending_seconds() -> float:
    return float(os.environ.get("EMULATOR_ACCEPT_PENDING_SECONDS", DEFAULT_PENDING_SECONDS))


class Connection:
    def __init__(self, config: Any, endpoint: Any, state: str):
        self.config = config
        self.endpoint = endpoint
        self.id = f"vpce-con-{random_hex(17)}"
        self.created = datetime.datetime.now(datetime.timezone.utc)
        self.state = state
        self.available_at: float | None = None  # while accepted and pending

    def set_state(self, state: str) -> None:
        self.state = state
        self.endpoint.state = state  # the consumer sees the same state

    def accept(self) -> str:
        delay = pending_seconds()
        if delay <= 0:
            self.set_state("available")
        else:
            self.available_at = time.time() + delay
            self.set_state("pending")
        return self.state

    def settle(self) -> None:
        """An accepted connection becomes available once its time in ``pending`` is over."""
        if self.state == "pending" and self.available_at is not None and time.time() >= self.available_at:
            self.available_at = None
            self.set_state("available")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ServiceId": self.config.id,
            "VpcEndpointId": self.endpoint.id,
            "VpcEndpointOwner": self.endpoint.ec2_backend.account_id,
            "VpcEndpointState": self.state,
            "CreationTimestamp": self.created,
            "DnsEntries": list(self.endpoint.dns_entries or []),
            "NetworkLoadBalancerArns": list(self.config.network_load_balancer_arns),
            "GatewayLoadBalancerArns": list(self.config.gateway_load_balancer_arns),
            "IpAddressType": "ipv4",
            "VpcEndpointConnectionId": self.id,
            "VpcEndpointRegion": self.endpoint.ec2_backend.region_name,
        }


def _service_az_ids(config: Any) -> set[str]:
    from moto.elbv2.models import elbv2_backends

    elbv2 = elbv2_backends[config.ec2_backend.account_id][config.ec2_backend.region_name]
    ids = set()
    for arn in list(config.network_load_balancer_arns) + list(config.gateway_load_balancer_arns):
        balancer = elbv2.load_balancers.get(arn)
        if balancer is not None:
            ids.update(s.availability_zone_id for s in balancer.subnets)
    return ids


def _dns_entries(endpoint: Any, config: Any, region: str, subnets: list[Any]) -> list[dict[str, str]]:
    suffix = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    base = f"{endpoint.id}-{suffix}"
    tail = f"{config.id}.{region}.vpce.amazonaws.com"
    entries = [{"DnsName": f"{base}.{tail}", "HostedZoneId": VPCE_HOSTED_ZONE_ID}]
    for zone in sorted({s.availability_zone for s in subnets}):
        entries.append({"DnsName": f"{base}-{zone}.{tail}", "HostedZoneId": VPCE_HOSTED_ZONE_ID})
    return entries


def _fix_interfaces(backend: Any, endpoint: Any) -> None:
    """moto gives endpoint ENIs a random 10.x address, usually outside the
    subnet, and no AWS markings; AWS puts them in the subnet, requester-managed."""
    groups = [g for g in (backend.get_security_group_from_id(i) for i in endpoint.security_group_ids) if g]
    for eni_id in endpoint.network_interface_ids:
        eni = backend.enis.get(eni_id)
        if eni is None:
            continue
        set_eni_ip(eni, allocate_ip(backend, eni.subnet, eni))
        eni.description = f"VPC Endpoint Interface {endpoint.id}"
        eni.interface_type = "vpc_endpoint"
        eni.requester_managed = True
        if groups:
            eni._group_set = list(groups)


def _transition(config: Any, endpoint_ids: list[str], accept: bool) -> tuple[list[dict[str, Any]], list[Any]]:
    unsuccessful: list[dict[str, Any]] = []
    messages: list[Any] = []
    allowed_from = ("pendingAcceptance",) if accept else ("pendingAcceptance", "pending", "available")
    event = "Accept" if accept else "Reject"
    with STATE_LOCK:
        for endpoint_id in endpoint_ids:
            connection = connections(config).get(endpoint_id)
            if connection is not None:
                connection.settle()
            if connection is None:
                unsuccessful.append({
                    "ResourceId": endpoint_id,
                    "Error": {
                        "Code": "InvalidVpcEndpointId.NotFound",
                        "Message": f"The Vpc Endpoint Id '{endpoint_id}' does not exist",
                    },
                })
            elif connection.state not in allowed_from:
                unsuccessful.append({
                    "ResourceId": endpoint_id,
                    "Error": {
                        "Code": "InvalidState",
                        "Message": f"Endpoint {endpoint_id} is in state {connection.state}; "
                        f"it must be {' or '.join(allowed_from)}.",
                    },
                })
            else:
                if accept:
                    state = connection.accept()
                else:
                    connection.available_at = None
                    connection.set_state(state := "rejected")
                messages += vpce_notifications.pending_messages(event, config, connection.endpoint, state)
    return unsuccessful, messages


def accept_vpc_endpoint_connections(self: EC2Response) -> ActionResult:
    config = self.ec2_backend.describe_vpc_endpoint_service_configurations([self._get_param("ServiceId")])[0]
    unsuccessful, messages = _transition(config, self._get_param("VpcEndpointIds", []) or [], accept=True)
    vpce_notifications.send(messages)
    return ActionResult({"Unsuccessful": unsuccessful})


def reject_vpc_endpoint_connections(self: EC2Response) -> ActionResult:
    config = self.ec2_backend.describe_vpc_endpoint_service_configurations([self._get_param("ServiceId")])[0]
    unsuccessful, messages = _transition(config, self._get_param("VpcEndpointIds", []) or [], accept=False)
    vpce_notifications.send(messages)
    return ActionResult({"Unsuccessful": unsuccessful})


_FILTERS = {
    "service-id": lambda c: c.config.id,
    "vpc-endpoint-id": lambda c: c.endpoint.id,
    "vpc-endpoint-owner": lambda c: c.endpoint.ec2_backend.account_id,
    "vpc-endpoint-state": lambda c: c.state,
    "vpc-endpoint-region": lambda c: c.endpoint.ec2_backend.region_name,
    "ip-address-type": lambda c: "ipv4",
}


def describe_vpc_endpoint_connections(self: EC2Response) -> ActionResult:
    filters = self._filters_from_querystring()
    for name in filters:
        if name not in _FILTERS:
            raise InvalidFilter(name)
    with STATE_LOCK:
        found = [
            c
            for config in list(self.ec2_backend.configurations.values())
            for c in connections(config).values()
        ]
        for connection in found:
            connection.settle()
    found = sorted(
        (c for c in found if all(_FILTERS[k](c) in v for k, v in filters.items())),
        key=lambda c: c.created,
    )
    start = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxResults") or 1000)
    result: dict[str, Any] = {"VpcEndpointConnections": [c.to_dict() for c in found[start : start + size]]}
    if start + size < len(found):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


def apply() -> None:
    @wrap(VPCBackend, "create_vpc_endpoint")
    def create_vpc_endpoint(original, self, vpc_id, service_name, endpoint_type, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not (service_name or "").startswith("com.amazonaws.vpce."):
            return original(self, vpc_id, service_name, endpoint_type, *args, **kwargs)
        config = find_service_by_name(service_name)
        if config is None or not allows(config, self.account_id):
            # AWS answers the same for a missing and a forbidden service.
            raise InvalidServiceName(service_name)
        wanted_type = "GatewayLoadBalancer" if config._service_type_name == "Gateway" else "Interface"
        if (endpoint_type or "Gateway").lower() != wanted_type.lower():
            raise EC2ClientError(
                "InvalidParameter",
                f"The VPC endpoint service {service_name} does not support the endpoint type {endpoint_type or 'Gateway'}.",
            )
        subnet_ids = kwargs.get("subnet_ids") if "subnet_ids" in kwargs else (args[2] if len(args) > 2 else None)
        subnets = [self.get_subnet(s) for s in subnet_ids or []]
        service_zones = _service_az_ids(config)
        for subnet in subnets:
            if service_zones and subnet.availability_zone_id not in service_zones:
                raise EC2ClientError(
                    "InvalidParameter",
                    f"The VPC endpoint service {service_name} does not support the availability zone "
                    f"of the subnet: {subnet.id}.",
                )
        endpoint = original(self, vpc_id, service_name, endpoint_type, *args, **kwargs)
        with STATE_LOCK:
            _fix_interfaces(self, endpoint)
            endpoint.dns_entries = _dns_entries(endpoint, config, self.region_name, subnets)
            initial = "pendingAcceptance" if config.acceptance_required else "available"
            connection = Connection(config, endpoint, initial)
            connection.set_state(initial)
            connections(config)[endpoint.id] = connection
            endpoint._emulator_connection = connection
            messages = vpce_notifications.pending_messages("Connect", config, endpoint, initial)
        vpce_notifications.send(messages)
        return endpoint

    @wrap(VPCBackend, "describe_vpc_endpoints")
    def describe_vpc_endpoints(original, self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # The consumer sees its endpoint leave ``pending`` as the provider does.
        with STATE_LOCK:
            for endpoint in list(self.vpc_end_points.values()):
                connection = getattr(endpoint, "_emulator_connection", None)
                if connection is not None:
                    connection.settle()
        return original(self, *args, **kwargs)

    @wrap(VPCBackend, "delete_vpc_endpoints")
    def delete_vpc_endpoints(original, self, vpce_ids=None):  # type: ignore[no-untyped-def]
        endpoints = [self.vpc_end_points.get(i) for i in vpce_ids or []]
        endpoints = [e for e in endpoints if e is not None and e.state != "deleted"]
        with STATE_LOCK:
            for endpoint in endpoints:
                for eni_id in endpoint.network_interface_ids:
                    eni = self.enis.get(eni_id)
                    if eni is not None:
                        release_ip(eni.subnet, eni.private_ip_address)
        result = original(self, vpce_ids=vpce_ids)
        messages: list[Any] = []
        with STATE_LOCK:
            for endpoint in endpoints:
                connection = getattr(endpoint, "_emulator_connection", None)
                if connection is not None:
                    connection.set_state("deleted")
                    messages += vpce_notifications.pending_messages("Delete", connection.config, endpoint, "deleted")
                # Computed above first, so the endpoint's own notifications still hear the Delete.
                vpce_notifications.forget_endpoint(self, endpoint.id)
        vpce_notifications.send(messages)
        return result

    for handler in (accept_vpc_endpoint_connections, reject_vpc_endpoint_connections, describe_vpc_endpoint_connections):
        setattr(EC2Response, handler.__name__, handler)
