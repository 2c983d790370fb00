"""ELBv2 fidelity the PrivateLink flow depends on.

* NLB ARNs read ``loadbalancer/net/`` (moto writes ``app`` for every type), so
  listener ARNs become ``listener/net/`` too.
* ``EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic``: AWS turns it ``on``
  for an NLB created with security groups, returns it in DescribeLoadBalancers
  and SetSecurityGroups, and lets SetSecurityGroups change it. moto drops it.
  SetSecurityGroups on an NLB created without groups fails as on AWS.
* CreateTargetGroup / CreateLoadBalancer / CreateListener are idempotent for
  identical settings and fail with ``DuplicateTargetGroupName`` /
  ``DuplicateLoadBalancerName`` / ``DuplicateListener`` otherwise (moto errors
  on any duplicate TG, silently duplicates LBs and listeners).
* DeleteLoadBalancer refuses (``ResourceInUse``) while an endpoint service
  uses the NLB; moto deletes it.
* SetSubnets on an NLB (AWS: SetSubnets reference and "Update the Availability
  Zones for your Network Load Balancer"): the subnets given replace the enabled
  ones, so a call must name every current subnet plus the new ones; one subnet
  per zone; a zone's subnet cannot be swapped in the same call; a zone cannot
  be removed while an endpoint service on the NLB has pending or available
  connections; subnets must lie in the NLB's VPC. One zone is enough for an
  NLB (moto demanded two, the ALB rule). When each zone was enabled is kept
  for target health (``elbv2_health.py``).
* RegisterTargets of an ``ip`` target group checks the address as AWS does
  (RegisterTargets and "IP addresses as targets" in the NLB guide; field
  reports of the error text): an address outside every subnet of the group's
  VPC needs ``AvailabilityZone=all`` (else ``ValidationError: The Availability
  Zone is required for IP address '<ip>' because it is not in the VPC``), and
  with ``all`` it must still be a private address (10/8, 172.16/12,
  192.168/16, 100.64/10): a publicly routable one is a ``ValidationError``.
  moto registered any string.
* A target group's ``LoadBalancerArns`` lose a load balancer once no listener
  of it forwards to the group (DeleteListener, DeleteLoadBalancer), as AWS
  reports it (TargetGroup reference: "the load balancers that route traffic to
  this target group"); moto kept every load balancer a listener ever added.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

from moto.core.responses import ActionResult
from moto.elbv2 import models as elbv2_models
from moto.elbv2 import utils as elbv2_utils
from moto.elbv2.exceptions import (
    DuplicateListenerError,
    DuplicateLoadBalancerName,
    DuplicateTargetGroupName,
    ELBClientError,
    InvalidConfigurationRequest,
    LoadBalancerNotFoundError,
    ResourceInUseError,
    SubnetNotFoundError,
    ValidationError,
)
from moto.elbv2.models import ELBv2Backend
from moto.elbv2.responses import ELBV2Response

from ._common import STATE_LOCK, wrap

ENFORCE_ATTR = "enforce_security_group_inbound_rules_on_private_link_traffic"
_ARN_TYPE = {"network": "net", "gateway": "gwy"}
_creating = threading.local()  # the Type of the LB being created, per thread


def _normalise(value: Any) -> str:
    return str(value).lower()


# CreateTargetGroup keyword -> FakeTargetGroup attribute. A setting the caller
# leaves out is not compared (AWS fills in the same default either way).
_TG_SETTINGS = {
    "protocol": "protocol",
    "port": "port",
    "vpc_id": "vpc_id",
    "target_type": "target_type",
    "protocol_version": "protocol_version",
    "healthcheck_protocol": "health_check_protocol",
    "healthcheck_port": "health_check_port",
    "healthcheck_path": "health_check_path",
    "healthcheck_interval_seconds": "health_check_interval_seconds",
    "healthcheck_timeout_seconds": "health_check_timeout_seconds",
    "healthcheck_enabled": "health_check_enabled",
    "healthy_threshold_count": "healthy_threshold_count",
    "unhealthy_threshold_count": "unhealthy_threshold_count",
    "ip_address_type": "ip_address_type",
}


def _same_target_group(existing: Any, kwargs: dict[str, Any]) -> bool:
    for key, attr in _TG_SETTINGS.items():
        wanted = kwargs.get(key)
        if wanted is not None and _normalise(wanted) != _normalise(getattr(existing, attr, None)):
            return False
    matcher = kwargs.get("matcher")
    if matcher and dict(matcher) != dict(getattr(existing, "matcher", {}) or {}):
        return False
    return True


def _action_key(action: Any) -> tuple[Any, ...]:
    data = action.data if hasattr(action, "data") else dict(action)
    groups = tuple(
        sorted(tg.get("TargetGroupArn", "") for tg in (data.get("ForwardConfig") or {}).get("TargetGroups", []))
    )
    return (data.get("Type"), data.get("TargetGroupArn") or (groups[0] if len(groups) == 1 else None), groups if len(groups) > 1 else ())


def zones_enabled_at(balancer: Any) -> dict[str, float]:
    """Zone name -> when it was enabled on ``balancer`` (monotonic seconds; 0 = unknown, long ago)."""
    with STATE_LOCK:
        known = balancer.__dict__.setdefault("_emulator_zones_since", {})
        current = {s.availability_zone for s in balancer.subnets}
        for zone in list(known):
            if zone not in current:
                del known[zone]
        for zone in current:
            known.setdefault(zone, 0.0)
        return dict(known)


def _mark_zones_enabled(balancer: Any, zones: set[str]) -> None:
    with STATE_LOCK:
        now = time.monotonic()
        since = balancer.__dict__.setdefault("_emulator_zones_since", {})
        for zone in zones:
            since[zone] = now


def _live_connections(backend: ELBv2Backend, balancer: Any) -> list[str]:
    """Ids of endpoint services on ``balancer`` that have pending or available connections."""
    from .vpce_services import LIVE_STATES, connections

    ec2 = backend.ec2_backend
    return [
        config.id
        for config in list(ec2.configurations.values())
        if balancer.arn in config.network_load_balancer_arns
        and any(c.state in LIVE_STATES for c in connections(config).values())
    ]


def _set_nlb_subnets(backend: ELBv2Backend, balancer: Any, subnet_ids: list[str]) -> list[Any]:
    if not subnet_ids:
        raise ValidationError("You must specify subnets or subnet mappings")
    wanted: dict[str, Any] = {}
    for subnet_id in subnet_ids:
        try:
            subnet = backend.ec2_backend.get_subnet(subnet_id)
        except Exception:  # moto's InvalidSubnetIdError
            raise SubnetNotFoundError()
        if subnet.vpc_id != balancer.vpc_id:
            raise InvalidSubnet(f"Subnet '{subnet_id}' is not in the VPC '{balancer.vpc_id}' of the load balancer")
        if subnet.availability_zone in wanted:
            raise InvalidConfigurationRequest("More than 1 subnet cannot be specified for 1 availability zone")
        wanted[subnet.availability_zone] = subnet
    current = {s.availability_zone: s for s in balancer.subnets}
    for zone, subnet in wanted.items():
        if zone in current and current[zone].id != subnet.id:
            raise InvalidConfigurationRequest(
                f"Subnet '{current[zone].id}' is enabled in Availability Zone '{zone}'; changing the subnet of a zone "
                "must be done in separate calls (remove the current subnet first, then add the new one)"
            )
    removed = sorted(set(current) - set(wanted))
    if removed:
        services = _live_connections(backend, balancer)
        if services:
            raise InvalidConfigurationRequest(
                f"You cannot remove Availability Zones ({', '.join(removed)}) from a Network Load Balancer that has "
                f"active VPC endpoint associations ({', '.join(services)}): name every current subnet plus the new ones"
            )
    balancer.subnets = list(wanted.values())
    _mark_zones_enabled(balancer, set(wanted) - set(current))
    zones_enabled_at(balancer)  # forget the removed zones
    return [elbv2_models.AvailabilityZone(s) for s in balancer.subnets]


class InvalidSubnet(ELBClientError):
    code = "InvalidSubnet"


_PRIVATE_RANGES = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")]


def _check_ip_target(backend: Any, group: Any, target: dict[str, Any]) -> None:
    try:
        address = ipaddress.ip_address(target.get("id") or target.get("Id") or "")
    except ValueError:
        raise ValidationError(f"The IP address '{target.get('id')}' is not a valid IPv4 address") from None
    subnets = [s for s in backend.ec2_backend.describe_subnets(filters={"vpc-id": [group.vpc_id]})]
    if any(address in ipaddress.ip_network(s.cidr_block) for s in subnets):
        return
    zone = target.get("availability_zone") or target.get("AvailabilityZone")
    if zone != "all":
        raise ValidationError(
            f"The Availability Zone is required for IP address '{address}' because it is not in the VPC")
    if not any(address in network for network in _PRIVATE_RANGES):
        raise ValidationError(f"The IP address '{address}' is publicly routable; IP targets must be private addresses")


def apply() -> None:
    original_make_arn = elbv2_utils.make_arn_for_load_balancer

    def make_arn_for_load_balancer(account_id: str, name: str, lb_id: str, region_name: str) -> str:
        arn = original_make_arn(account_id=account_id, name=name, lb_id=lb_id, region_name=region_name)
        kind = _ARN_TYPE.get(getattr(_creating, "lb_type", None) or "")
        return arn.replace(":loadbalancer/app/", f":loadbalancer/{kind}/") if kind else arn

    # models.py imported the function by name, so replace it there.
    elbv2_models.make_arn_for_load_balancer = make_arn_for_load_balancer

    @wrap(ELBv2Backend, "create_load_balancer")
    def create_load_balancer(original, self, name, security_groups, subnet_ids, subnet_mappings=None,
                             scheme="internet-facing", loadbalancer_type=None, ip_address_type="ipv4", tags=None):  # type: ignore[no-untyped-def]
        lb_type = loadbalancer_type or "application"
        wanted_subnets = set(subnet_ids or []) | {m["SubnetId"] for m in subnet_mappings or []}
        for existing in list(self.load_balancers.values()):
            if existing.name != name:
                continue
            same = (
                existing.type == lb_type
                and existing.scheme == (scheme or "internet-facing")
                and {s.id for s in existing.subnets} == wanted_subnets
                and set(existing.security_groups or []) == set(security_groups or [])
                and existing.ip_address_type == (ip_address_type or "ipv4")
            )
            if same:
                return existing
            raise DuplicateLoadBalancerName()
        _creating.lb_type = lb_type
        try:
            lb = original(self, name, security_groups, subnet_ids, subnet_mappings=subnet_mappings, scheme=scheme,
                          loadbalancer_type=loadbalancer_type, ip_address_type=ip_address_type, tags=tags)
        finally:
            _creating.lb_type = None
        if lb.type == "network" and lb.security_groups:
            # AWS default for an NLB created with security groups.
            setattr(lb, ENFORCE_ATTR, "on")
        _mark_zones_enabled(lb, {s.availability_zone for s in lb.subnets})
        return lb

    @wrap(ELBv2Backend, "set_subnets")
    def set_subnets(original, self, arn, subnets, subnet_mappings):  # type: ignore[no-untyped-def]
        balancer = self.load_balancers.get(arn)
        if balancer is None:
            raise LoadBalancerNotFoundError()
        if balancer.type != "network":
            return original(self, arn, subnets, subnet_mappings)
        ids = list(subnets or []) + [m["SubnetId"] for m in subnet_mappings or [] if m.get("SubnetId")]
        with STATE_LOCK:
            return _set_nlb_subnets(self, balancer, ids)

    @wrap(ELBv2Backend, "create_target_group")
    def create_target_group(original, self, name, **kwargs):  # type: ignore[no-untyped-def]
        for existing in list(self.target_groups.values()):
            if existing.name == name:
                if _same_target_group(existing, kwargs):
                    return existing
                raise DuplicateTargetGroupName()
        return original(self, name, **kwargs)

    @wrap(ELBv2Backend, "create_listener")
    def create_listener(original, self, load_balancer_arn, protocol, port, ssl_policy, certificate, actions,
                        alpn_policy=None, tags=None):  # type: ignore[no-untyped-def]
        balancer = self.load_balancers.get(load_balancer_arn)
        if balancer is not None:
            for existing in list(balancer.listeners.values()):
                if _normalise(existing.port) != _normalise(port):
                    continue
                same = _normalise(existing.protocol) == _normalise(protocol or "") and sorted(
                    map(_action_key, existing.default_actions)
                ) == sorted(map(_action_key, actions or []))
                if same:
                    return existing
                raise DuplicateListenerError()
        return original(self, load_balancer_arn, protocol, port, ssl_policy, certificate, actions,
                        alpn_policy=alpn_policy, tags=tags)

    @wrap(ELBv2Backend, "register_targets")
    def register_targets(original, self, target_group_arn, instances):  # type: ignore[no-untyped-def]
        group = self.target_groups.get(target_group_arn)
        if group is not None and group.target_type == "ip":
            for target in instances or []:
                _check_ip_target(self, group, target)
        return original(self, target_group_arn, instances)

    def _forget_unrouted(self: Any) -> None:
        routed = {(lb.arn, action.data.get("TargetGroupArn")) for lb in self.load_balancers.values()
                  for listener in lb.listeners.values() for action in listener.default_actions}
        for group in self.target_groups.values():
            group.load_balancer_arns = [arn for arn in group.load_balancer_arns if (arn, group.arn) in routed]

    @wrap(ELBv2Backend, "delete_listener")
    def delete_listener(original, self, listener_arn):  # type: ignore[no-untyped-def]
        listener = original(self, listener_arn)
        _forget_unrouted(self)
        return listener

    @wrap(ELBv2Backend, "delete_load_balancer")
    def delete_load_balancer(original, self, arn):  # type: ignore[no-untyped-def]
        from moto.ec2.models import ec2_backends

        ec2 = ec2_backends[self.account_id][self.region_name]
        for config in list(ec2.configurations.values()):
            if arn in config.network_load_balancer_arns or arn in config.gateway_load_balancer_arns:
                raise ResourceInUseError(
                    f"Load balancer '{arn}' cannot be deleted because it is currently associated "
                    f"with another service ({config.id})"
                )
        original(self, arn)
        _forget_unrouted(self)

    def set_security_groups(self: ELBV2Response) -> ActionResult:
        arn = self._get_param("LoadBalancerArn")
        groups = self._get_param("SecurityGroups", []) or []
        enforce = self._get_param("EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic")
        balancer = self.elbv2_backend.load_balancers.get(arn)
        is_nlb = balancer is not None and balancer.type == "network"
        if is_nlb and not balancer.security_groups and groups:
            raise InvalidConfigurationRequest(
                "You cannot set security groups on a Network Load Balancer which was created without any security groups."
            )
        if is_nlb and balancer.security_groups and not groups:
            raise ValidationError(
                "You cannot remove all security groups from a Network Load Balancer which was created with security groups."
            )
        if enforce is not None and enforce not in ("on", "off"):
            raise ValidationError(
                f"1 validation error detected: Value '{enforce}' at "
                "'enforceSecurityGroupInboundRulesOnPrivateLinkTraffic' failed to satisfy constraint: "
                "Member must satisfy enum value set: [on, off]"
            )
        self.elbv2_backend.set_security_groups(arn, groups)
        result: dict[str, Any] = {"SecurityGroupIds": groups}
        if is_nlb:
            if enforce is not None:
                setattr(balancer, ENFORCE_ATTR, enforce)
            result["EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] = getattr(balancer, ENFORCE_ATTR, "on")
        return ActionResult(result)

    # moto's handler answers {"SecurityGroups": ...}, which is not in the
    # SetSecurityGroups output shape, so the ids never reach the client.
    ELBV2Response.set_security_groups = set_security_groups  # type: ignore[method-assign]
