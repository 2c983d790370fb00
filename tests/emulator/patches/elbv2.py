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
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.responses import ActionResult
from moto.elbv2 import models as elbv2_models
from moto.elbv2 import utils as elbv2_utils
from moto.elbv2.exceptions import (
    DuplicateListenerError,
    DuplicateLoadBalancerName,
    DuplicateTargetGroupName,
    InvalidConfigurationRequest,
    ResourceInUseError,
    ValidationError,
)
from moto.elbv2.models import ELBv2Backend
from moto.elbv2.responses import ELBV2Response

from ._common import wrap

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
        return lb

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
        return original(self, arn)

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
