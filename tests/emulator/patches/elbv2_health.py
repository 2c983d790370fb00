"""Target health as a load balancer's health checks would find it.

AWS (DescribeTargetHealth / TargetHealth reference, "Check the health of your
Network Load Balancer targets"): a load balancer routes only to targets in the
Availability Zones enabled on it, and only once its health checks reach them.

* A target of a target group that no listener forwards to, or whose address
  lies in a zone the load balancer does not have enabled, is ``unused`` with
  reason ``Target.NotInUse`` (cross-zone load balancing or not).
* A newly registered target (or one whose group or zone was just attached or
  enabled) is ``initial``: ``Elb.RegistrationInProgress``, then
  ``Elb.InitialHealthChecking``.
* Then ``healthy`` when the health check reaches the target: the load
  balancer's security groups (if it has any) allow egress on the health-check
  port to the target, and the target's security groups admit that port from one
  of the load balancer's groups or from an address range holding its nodes;
  else ``unhealthy`` with ``Target.FailedHealthChecks`` (a Network Load
  Balancer never reports ``Target.Timeout``; Application Load Balancers do).
  An address no network interface holds answers nothing: ``unhealthy``.

Stock moto 5.2.5 reports every registered target ``healthy`` at once.

The target's zone and security groups come from the network interface holding
the target's address in the group's VPC (an RDS instance's is described
``RDSNetworkInterface``, see ``rds.py``; after a failover the address, zone and
interface change and health follows), or the instance's primary interface for
``instance`` targets. An IP outside every subnet of the VPC (a peered range,
AWS's ``AvailabilityZone=all``) is not zone-checked.

How long ``initial`` lasts is an emulator setting (``POST /moto-api/config`` or
``launch.py --config``): ``{"elbv2": {"target_initial_describes": N}}``, the
number of DescribeTargetHealth answers that show a target ``initial`` before
its verdict (default ``DEFAULT_INITIAL_DESCRIBES``; 0 = verdict at once). AWS
counts time (tens of seconds to minutes); counting answers instead lets a
polling workflow see ``initial`` exactly N times whatever its poll interval,
and keeps the tests free of sleeps. The count starts again when the target is
registered anew, its group gets its first listener, or its zone is enabled.
Health is evaluated on every describe, so a changed security group rule shows
at once (AWS: after the healthy/unhealthy threshold count of checks).
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from moto.core.config import default_user_config
from moto.elbv2.models import FakeHealthStatus, FakeListener, FakeTargetGroup, elbv2_backends
from moto.moto_api._internal.models import MotoAPIBackend

from . import elbv2
from ._common import STATE_LOCK, log, wrap

DEFAULT_INITIAL_DESCRIBES = 1
CONFIG_KEY = "elbv2"
INITIAL_SETTING = "target_initial_describes"

# (state, reason, description) as AWS reports them.
NOT_ATTACHED = ("unused", "Target.NotInUse", "Target group is not configured to receive traffic from the load balancer")
ZONE_NOT_ENABLED = ("unused", "Target.NotInUse", "Target is in an Availability Zone that is not enabled for the load balancer")
REGISTERING = ("initial", "Elb.RegistrationInProgress", "Target registration is in progress")
INITIAL_CHECKS = ("initial", "Elb.InitialHealthChecking", "Initial health checks in progress")
FAILED_CHECKS = ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")
TIMED_OUT = ("unhealthy", "Target.Timeout", "Request timed out")  # ALB / GWLB only


def initial_describes() -> int:
    value = (default_user_config.get(CONFIG_KEY) or {}).get(INITIAL_SETTING, DEFAULT_INITIAL_DESCRIBES)  # type: ignore[attr-defined]
    return int(value)


def _initial_answers(group: Any, target_id: str, epoch: float) -> int:
    """How many answers (this one included) have described the target since ``epoch``."""
    with STATE_LOCK:
        seen = group.__dict__.setdefault("_emulator_initial_answers", {})
        last_epoch, count = seen.get(target_id, (None, 0))
        count = count + 1 if last_epoch == epoch else 1
        seen[target_id] = (epoch, count)
        return count


def _registered_at(group: Any) -> dict[str, float]:
    return group.__dict__.setdefault("_emulator_registered_at", {})


def _actions_target_groups(actions: list[Any]) -> set[str]:
    arns: set[str] = set()
    for action in actions or []:
        data = action.data if hasattr(action, "data") else dict(action)
        if data.get("TargetGroupArn"):
            arns.add(data["TargetGroupArn"])
        for entry in (data.get("ForwardConfig") or {}).get("TargetGroups", []) or []:
            if entry.get("TargetGroupArn"):
                arns.add(entry["TargetGroupArn"])
    return arns


def attachments(group: Any) -> list[tuple[Any, float]]:
    """(load balancer, since when) for each load balancer with a listener or rule forwarding to ``group``."""
    backend = elbv2_backends[group.account_id][group.region_name]
    found = []
    for balancer in list(backend.load_balancers.values()):
        since = [
            listener.__dict__.get("_emulator_created_at", 0.0)
            for listener in list(balancer.listeners.values())
            if any(group.arn in _actions_target_groups(rule.actions) for rule in list(listener.rules.values()))
        ]
        if since:
            found.append((balancer, min(since)))
    return found


def _interface(ec2: Any, vpc_id: str, ip: str) -> Any | None:
    for eni in list(ec2.enis.values()):
        if eni.subnet is None or eni.subnet.vpc_id != vpc_id:
            continue
        addresses = {a.get("PrivateIpAddress") for a in eni.private_ip_addresses} | {eni.private_ip_address}
        if ip in addresses:
            return eni
    return None


def _zone_of(ec2: Any, vpc_id: str, ip: str) -> str | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    for subnet in ec2.describe_subnets(filters={"vpc-id": [vpc_id]}):
        if address in ipaddress.ip_network(subnet.cidr_block, strict=False):
            return subnet.availability_zone
    return None


def _target(group: Any, target_id: str) -> tuple[str | None, str | None, list[Any]]:
    """The target's address, zone and security groups (none when nothing holds the address)."""
    ec2 = group.ec2_backend
    if group.target_type == "instance":
        instance = ec2.get_instance_by_id(target_id)
        if instance is None or not instance.nics:
            return None, None, []
        eni = instance.nics[0]
        return eni.private_ip_address, eni.subnet.availability_zone, list(eni.group_set)
    eni = _interface(ec2, group.vpc_id, target_id)
    if eni is not None:
        return target_id, eni.subnet.availability_zone, list(eni.group_set)
    return target_id, _zone_of(ec2, group.vpc_id, target_id), []


def _covers(rule: Any, port: int) -> bool:
    if rule.ip_protocol == "-1":
        return True
    return rule.ip_protocol in ("tcp", "6") and rule.from_port is not None and rule.from_port <= port <= rule.to_port


def _in_range(rule: Any, networks: list[Any]) -> bool:
    cidr = (rule.ip_range or {}).get("CidrIp")
    if not cidr or not networks:
        return False
    block = ipaddress.ip_network(cidr, strict=False)
    return all(n.version == block.version and n.subnet_of(block) for n in networks)


def reachable(balancer: Any, ip: str | None, groups: list[Any], port: int) -> bool:
    """Whether the balancer's health check to ``ip``:``port`` passes both sides' security groups."""
    if ip is None or not groups:
        return False
    ec2 = groups[0].ec2_backend
    target_ids = {g.id for g in groups}
    balancer_ids = set(balancer.security_groups or [])
    if balancer_ids:
        egress = [r for g in map(ec2.get_security_group_from_id, balancer_ids) if g for r in g.egress_rules]
        address = [ipaddress.ip_network(f"{ip}/32")]
        if not any(
            _covers(r, port) and ((r.source_group or {}).get("GroupId") in target_ids or _in_range(r, address))
            for r in egress
        ):
            return False
    # The balancer's nodes take addresses anywhere in its subnets.
    nodes = [ipaddress.ip_network(s.cidr_block, strict=False) for s in balancer.subnets]
    ingress = [r for g in groups for r in g.ingress_rules]
    return any(
        _covers(r, port) and ((r.source_group or {}).get("GroupId") in balancer_ids or _in_range(r, nodes))
        for r in ingress
    )


def evaluate(group: Any, target_id: str, port: Any) -> tuple[str, str, str]:
    attached = attachments(group)
    if not attached:
        return NOT_ATTACHED
    balancer, attached_since = attached[0]
    ip, zone, groups = _target(group, target_id)
    enabled = elbv2.zones_enabled_at(balancer)
    if zone is not None and zone not in enabled:
        return ZONE_NOT_ENABLED
    epoch = max(_registered_at(group).get(target_id, 0.0), attached_since, enabled.get(zone, 0.0))
    answers, limit = _initial_answers(group, target_id, epoch), initial_describes()
    if answers <= limit:
        return REGISTERING if answers <= (limit + 1) // 2 else INITIAL_CHECKS
    check_port = group.health_check_port
    check_port = int(port) if check_port in (None, "traffic-port") else int(check_port)
    if reachable(balancer, ip, groups, check_port):
        return ("healthy", None, None)  # type: ignore[return-value]
    return FAILED_CHECKS if balancer.type == "network" else TIMED_OUT


def apply() -> None:
    @wrap(MotoAPIBackend, "set_config")
    def set_config(original, self, config):  # type: ignore[no-untyped-def]
        original(self, config)
        settings = config.get(CONFIG_KEY) if isinstance(config, dict) else None
        if settings is None:
            return
        try:
            count = settings[INITIAL_SETTING]
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(count)
        except (KeyError, TypeError, ValueError):
            log.warning("elbv2: ignored setting %r (want {%r: an integer >= 0})", settings, INITIAL_SETTING)
            return
        default_user_config[CONFIG_KEY] = {INITIAL_SETTING: count}  # type: ignore[literal-required]

    @wrap(FakeListener, "__init__")
    def listener_init(original, self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        self._emulator_created_at = time.monotonic()

    @wrap(FakeTargetGroup, "register")
    def register(original, self, targets):  # type: ignore[no-untyped-def]
        with STATE_LOCK:
            before = set(self.targets)
            original(self, targets)
            now = time.monotonic()
            for target in targets:
                if target["Id"] not in before:
                    _registered_at(self)[target["Id"]] = now

    @wrap(FakeTargetGroup, "deregister")
    def deregister(original, self, targets):  # type: ignore[no-untyped-def]
        with STATE_LOCK:
            original(self, targets)
            for target in targets:
                _registered_at(self).pop(target["Id"], None)

    @wrap(FakeTargetGroup, "health_for")
    def health_for(original, self, target, ec2_backend):  # type: ignore[no-untyped-def]
        status = original(self, target, ec2_backend)
        if status.status != "healthy" or self.target_type not in ("ip", "instance"):
            return status
        state, reason, description = evaluate(self, status.instance_id, status.port)
        return FakeHealthStatus(status.instance_id, status.port, status.health_check_port, state, reason, description)
