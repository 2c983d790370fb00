"""Account quotas that a wave of provisionings reaches: a create call beyond the quota fails as
AWS fails it, and creates nothing.

AWS (default quotas, per account and region, adjustable in Service Quotas):
  * Network Load Balancers per Region: 50 (ELB "Quotas for your Network Load Balancers");
    CreateLoadBalancer beyond it: ``TooManyLoadBalancers``.
  * Target groups per Region: 3000 (same page); CreateTargetGroup: ``TooManyTargetGroups``.
  * Listeners per Network Load Balancer: 50, not adjustable (same page); CreateListener beyond
    it: ``TooManyListeners``.
  * VPC security groups per Region: 2500 (Amazon VPC quotas, "Security groups");
    CreateSecurityGroup: ``SecurityGroupLimitExceeded``.
  * Inbound or outbound rules per security group: 60 each (same page);
    AuthorizeSecurityGroupIngress/Egress: ``RulesPerSecurityGroupLimitExceeded``.

Stock moto has no quota.

Here, enforced by default with AWS's defaults; changed (as a Service Quotas increase would) by
the environment at start (``EMULATOR_QUOTAS='{"network-load-balancers": 200}'``) or by a control
route (not an AWS API, served by launch.py):

    POST /_emulator/quotas  {"network-load-balancers": 200}   (the others keep their value)
    GET  /_emulator/quotas  the quotas in force
    DELETE /_emulator/quotas  back to AWS's defaults

A create that returns an existing resource (the same name and settings, patches/elbv2.py) creates
nothing and is never refused.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from ._common import STATE_LOCK, log

DEFAULTS = {"network-load-balancers": 50, "target-groups": 3000, "listeners-per-load-balancer": 50,
            "security-groups": 2500, "rules-per-security-group": 60}
_quotas: dict[str, int] = dict(DEFAULTS)

# Each refusal as AWS words it (the API references' error descriptions).
MESSAGES = {
    "network-load-balancers": ("elasticloadbalancing", "TooManyLoadBalancers",
                               "You've reached the limit on the number of load balancers for your account."),
    "target-groups": ("elasticloadbalancing", "TooManyTargetGroups",
                      "You've reached the limit on the number of target groups for your AWS account."),
    "listeners-per-load-balancer": ("elasticloadbalancing", "TooManyListeners",
                                    "You've reached the limit on the number of listeners per load balancer."),
    "security-groups": ("ec2", "SecurityGroupLimitExceeded",
                        "The maximum number of security groups for the region has been reached."),
    "rules-per-security-group": ("ec2", "RulesPerSecurityGroupLimitExceeded",
                                 "The maximum number of rules per security group has been reached."),
}


class QuotaConfigError(ValueError):
    pass


def configure(changes: Any, reset: bool = False) -> None:
    if not isinstance(changes, dict) or any(k not in DEFAULTS or not isinstance(v, int) or v < 0
                                            for k, v in changes.items()):
        raise QuotaConfigError(f"quotas: an object of {sorted(DEFAULTS)} -> a count >= 0, not {changes!r}")
    with STATE_LOCK:
        if reset:
            _quotas.clear()
            _quotas.update(DEFAULTS)
        _quotas.update(changes)


def control(method: str, body: bytes) -> tuple[str, dict[str, Any]]:
    try:
        if method == "POST":
            configure(json.loads(body or b"{}"))
        elif method == "DELETE":
            configure({}, reset=True)
        elif method != "GET":
            return "405 Method Not Allowed", {"message": f"{method} is not supported here"}
    except ValueError as error:
        return "400 Bad Request", {"message": str(error)}
    with STATE_LOCK:
        return "200 OK", dict(_quotas)


def _used(response: Any, action: str) -> tuple[str, int, int] | None:
    """(quota, in use, to be added) for a create call that a quota limits, else None."""
    from moto.ec2.models import ec2_backends
    from moto.elbv2.models import elbv2_backends

    account, region = response.current_account, response.region
    if action in ("CreateLoadBalancer", "CreateTargetGroup"):
        backend = elbv2_backends[account][region]
        name = response._get_param("Name")
        if action == "CreateLoadBalancer":
            existing = [lb for lb in backend.load_balancers.values() if lb.type == "network"]
            is_new = response._get_param("Type") == "network" and name not in {lb.name for lb in existing}
            return "network-load-balancers", len(existing), int(is_new)
        existing = list(backend.target_groups.values())
        return "target-groups", len(existing), int(name not in {g.name for g in existing})
    if action == "CreateListener":
        balancer = elbv2_backends[account][region].load_balancers.get(response._get_param("LoadBalancerArn"))
        if balancer is None:
            return None
        # A listener on a port the balancer already listens on is returned or refused
        # (DuplicateListener, patches/elbv2.py), never added.
        ports = {str(listener.port) for listener in balancer.listeners.values()}
        return "listeners-per-load-balancer", len(ports), int(str(response._get_param("Port")) not in ports)
    backend = ec2_backends[account][region]
    if action == "CreateSecurityGroup":
        return "security-groups", sum(len(groups) for groups in backend.groups.values()), 1
    if action in ("AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress"):
        group = backend.get_security_group_from_id(response._get_param("GroupId") or "")
        if group is None:
            return None
        rules = group.ingress_rules if action.endswith("Ingress") else group.egress_rules
        pattern = re.compile(r"^IpPermissions\.\d+\.(IpRanges|Ipv6Ranges|Groups|PrefixListIds)\.\d+\."
                             r"(CidrIp|CidrIpv6|GroupId|PrefixListId)$")
        adding = sum(1 for key in response.querystring if pattern.match(key))
        return "rules-per-security-group", len(rules), adding
    return None


def check(response: Any) -> None:
    """Refuses a create call beyond its quota, in the service's error shape (a call hook)."""
    if response.service_name not in ("ec2", "elbv2"):
        return
    used = _used(response, response._get_action())
    if used is None:
        return
    quota, in_use, adding = used
    with STATE_LOCK:
        limit = _quotas[quota]
    if adding and in_use + adding > limit:
        from .iam_evaluation import service_error

        service, code, message = MESSAGES[quota]
        raise service_error(service, code, message, 400, response.headers.get("Content-Type") or "")


def apply() -> None:
    from moto.ec2.models.security_groups import SecurityGroupBackend

    from ._common import CALL_HOOKS

    CALL_HOOKS.append(check)
    # moto refuses a 61st rule on its own, whatever the quota says; ``check`` is the one that
    # counts, so a raised quota (AWS: adjustable up to 1,000) lets the rule through.
    SecurityGroupBackend._verify_group_will_respect_rule_count_limit = lambda *args, **kwargs: None
    configured = os.environ.get("EMULATOR_QUOTAS", "").strip()
    if configured:
        try:
            configure(json.loads(configured))
        except ValueError as error:
            log.error("EMULATOR_QUOTAS ignored: %s", error)
