"""Endpoint service configurations: ids, ClientToken, Filters, visibility, delete.

* Service ids are ``vpce-svc-<17 hex>`` like AWS (moto: 8 hex digits).
* CreateVpcEndpointServiceConfiguration honours ClientToken: the same token in
  the same account and region returns the same service (moto ignores it).
* DescribeVpcEndpointServiceConfigurations honours Filters: service-id,
  service-name, service-state, service-type, tag:<key>, tag-key (moto ignores them).
* DescribeVpcEndpointServices also lists services of *other* accounts that
  allow the caller (moto only looks at the caller's own services), and tags
  of the caller's own services (moto's tag filter crashed on them).
* DeleteVpcEndpointServiceConfigurations refuses a service with pending or
  available connections (``ExistingVpcEndpointConnections``) and deletes the
  service's connection notifications with it.
"""

from __future__ import annotations

import re
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidFilter
from moto.ec2.models import ec2_backends
from moto.ec2.models.vpc_service_configuration import VPCServiceConfiguration
from moto.ec2.models.vpcs import VPCBackend
from moto.ec2.responses.vpc_service_configuration import VPCEndpointServiceConfiguration

from . import vpce_notifications
from ._common import STATE_LOCK, iter_backends, random_hex, state, wrap

LIVE_STATES = ("pendingAcceptance", "available", "pending")
_PRINCIPAL = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):.+$")


def connections(config: Any) -> dict[str, Any]:
    """vpc-endpoint-id -> connection record (see vpce_connections)."""
    return state(config, "_emulator_connections", dict)


def allows(config: Any, account_id: str) -> bool:
    """Whether ``account_id`` may see and connect to the service.

    The owner always may; otherwise a principal ``*`` or any IAM ARN of that
    account (``:root``, ``:*``, or a role/user ARN, matched at account level).
    """
    if config.ec2_backend.account_id == account_id:
        return True
    for principal in list(config.principals):
        if principal == "*":
            return True
        match = _PRINCIPAL.match(principal)
        if match and match.group(1) == account_id:
            return True
    return False


def find_service_by_name(service_name: str) -> Any | None:
    """The service configuration, in any account, named ``service_name``."""
    for _account, region, backend in iter_backends(ec2_backends):
        if not service_name.startswith(f"com.amazonaws.vpce.{region}."):
            continue
        for config in list(backend.configurations.values()):
            if config.service_name == service_name:
                return config
    return None


def _tags(config: Any) -> list[dict[str, str]]:
    out = []
    for tag in config.get_tags():
        key = tag.get("Key", tag.get("key"))
        value = tag.get("Value", tag.get("value"))
        out.append({"Key": key, "Value": value})
    return out


def _filter_value(config: Any, name: str) -> list[str]:
    if name == "service-id":
        return [config.id]
    if name == "service-name":
        return [config.service_name]
    if name == "service-state":
        return [config.service_state]
    if name == "service-type":
        return [config._service_type_name]
    if name == "tag-key":
        return [t["Key"] for t in _tags(config)]
    if name.startswith("tag:"):
        return [t["Value"] for t in _tags(config) if t["Key"] == name[4:]]
    raise InvalidFilter(name)


def apply() -> None:
    @wrap(VPCServiceConfiguration, "__init__")
    def init(original, self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        region = kwargs.get("region") if "region" in kwargs else args[1]
        self.id = f"vpce-svc-{random_hex(17)}"
        self.service_name = f"com.amazonaws.vpce.{region}.{self.id}"
        self.endpoint_dns_name = f"{self.id}.{region}.vpce.amazonaws.com"

    @wrap(VPCServiceConfiguration, "to_dict")
    def to_dict(original, self):  # type: ignore[no-untyped-def]
        out = original(self)
        out["Tags"] = _tags(self)
        return out

    original_collect = VPCBackend._collect_default_endpoint_services

    def collect(account_id: str, region: str) -> list[dict[str, Any]]:
        services = list(original_collect(account_id, region))
        for other_account, other_region, backend in iter_backends(ec2_backends):
            if other_account == account_id or other_region != region:
                continue
            for config in list(backend.configurations.values()):
                if allows(config, account_id):
                    detail = config.to_dict()
                    detail["Tags"] = []  # a consumer does not see the owner's tags
                    services.append(detail)
        return services

    VPCBackend._collect_default_endpoint_services = staticmethod(collect)  # type: ignore[method-assign]

    @wrap(VPCEndpointServiceConfiguration, "create_vpc_endpoint_service_configuration")
    def create(original, self):  # type: ignore[no-untyped-def]
        token = self._get_param("ClientToken")
        backend = self.ec2_backend
        tokens = state(backend, "_emulator_service_tokens", dict)
        if token and tokens.get(token) in backend.configurations:
            return ActionResult({"ServiceConfiguration": backend.configurations[tokens[token]], "ClientToken": token})
        result = original(self)
        if token:
            config = result.result["ServiceConfiguration"]
            with STATE_LOCK:
                tokens[token] = config.id
            return ActionResult({"ServiceConfiguration": config, "ClientToken": token})
        return result

    def describe_configurations(self: Any) -> ActionResult:
        configs = self.ec2_backend.describe_vpc_endpoint_service_configurations(self._get_param("ServiceIds", []))
        filters = self._filters_from_querystring()
        for name in filters:
            if name not in ("service-id", "service-name", "service-state", "service-type", "tag-key") and not name.startswith("tag:"):
                raise InvalidFilter(name)
        configs = [c for c in configs if all(set(_filter_value(c, k)) & set(v) for k, v in filters.items())]
        start = int(self._get_param("NextToken") or 0)
        size = int(self._get_param("MaxResults") or 1000)
        result: dict[str, Any] = {"ServiceConfigurations": configs[start : start + size]}
        if start + size < len(configs):
            result["NextToken"] = str(start + size)
        return ActionResult(result)

    VPCEndpointServiceConfiguration.describe_vpc_endpoint_service_configurations = describe_configurations  # type: ignore[method-assign]

    def delete_configurations(self: Any) -> ActionResult:
        backend = self.ec2_backend
        unsuccessful = []
        deletable = []
        with STATE_LOCK:
            for service_id in self._get_param("ServiceIds", []) or []:
                config = backend.configurations.get(service_id)
                live = config is not None and any(c.state in LIVE_STATES for c in connections(config).values())
                if live:
                    unsuccessful.append({
                        "ResourceId": service_id,
                        "Error": {
                            "Code": "ExistingVpcEndpointConnections",
                            "Message": f"Service {service_id} has existing active VPC Endpoint connections!",
                        },
                    })
                else:
                    deletable.append(service_id)
            missing = backend.delete_vpc_endpoint_service_configurations(deletable)
        for service_id in deletable:
            if service_id in missing:
                unsuccessful.append({
                    "ResourceId": service_id,
                    "Error": {
                        "Code": "InvalidVpcEndpointService.NotFound",
                        "Message": f"The VpcEndpointService Id '{service_id}' does not exist",
                    },
                })
            else:
                vpce_notifications.forget_service(backend, service_id)
        return ActionResult({"Unsuccessful": unsuccessful})

    VPCEndpointServiceConfiguration.delete_vpc_endpoint_service_configurations = delete_configurations  # type: ignore[method-assign]
