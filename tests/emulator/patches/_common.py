"""Helpers shared by the patch modules: wrapping moto methods, walking every
account's backends, and handing out private IPs that really lie in a subnet.

Nothing here changes moto by itself; the area modules call these helpers.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
import threading
from typing import Any, Callable, Iterator

log = logging.getLogger("emulator")

# One lock for every change the extension makes to moto's in-memory state
# outside moto's own methods (connection records, IP allocation). Werkzeug is
# threaded and a Rust test binary fires requests in parallel.
STATE_LOCK = threading.RLock()

# Called with moto's response object before every API call is handled; a hook refuses the call by
# raising iam_evaluation.Denied (rendered in the service's error shape). iam_evaluation runs them.
CALL_HOOKS: list[Callable[[Any], None]] = []


def wrap(owner: Any, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replace ``owner.name`` by ``wrapper(original, *args, **kwargs)``.

    The original stays reachable for the wrapper, so each patch only adds the
    behaviour it owns and leaves moto's own logic (and validation) in place.
    Applying twice is a no-op, so importing ``patches`` twice cannot stack.
    """

    def decorate(wrapper: Callable[..., Any]) -> Callable[..., Any]:
        original = getattr(owner, name)
        if getattr(original, "__emulator_wrapped__", False):
            return original

        @functools.wraps(original)
        def patched(*args: Any, **kwargs: Any) -> Any:
            return wrapper(original, *args, **kwargs)

        patched.__emulator_wrapped__ = True  # type: ignore[attr-defined]
        setattr(owner, name, patched)
        return patched

    return decorate


def iter_backends(backend_dict: Any) -> Iterator[tuple[str, str, Any]]:
    """(account, region, backend) for every backend that already exists.

    Unlike ``backend_dict[account][region]`` this never creates a backend, and
    it copies the dicts first because other threads may add accounts while we
    walk them.
    """
    for account_id, per_account in list(backend_dict.items()):
        for region, backend in list(per_account.items()):
            yield account_id, region, backend


def _used_ips(ec2_backend: Any, subnet: Any) -> set[str]:
    used: set[str] = set(subnet._subnet_ips.keys())
    for eni in list(ec2_backend.enis.values()):
        if eni.subnet is not None and eni.subnet.id == subnet.id:
            used.update(a.get("PrivateIpAddress") for a in eni.private_ip_addresses)
            if eni.private_ip_address:
                used.add(eni.private_ip_address)
    return used


def allocate_ip(ec2_backend: Any, subnet: Any, owner: Any) -> str:
    """A free IPv4 address inside ``subnet``'s CIDR, registered as taken.

    AWS reserves the first four addresses and the last one of every subnet;
    moto's own ENI code picks ``random_private_ip()`` from 10.0.0.0/8, often
    outside the subnet, which the project's "IP must lie in the VPC" checks
    would (rightly) reject.
    """
    net = ipaddress.IPv4Network(subnet.cidr_block, strict=False)
    first = int(net.network_address) + 4
    last = int(net.broadcast_address) - 1
    if last < first:
        raise RuntimeError(f"subnet {subnet.id} ({net}) is too small for an ENI")
    with STATE_LOCK:
        used = _used_ips(ec2_backend, subnet)
        # Random like AWS (so tests cannot bake in an address), bounded tries,
        # then a linear scan so a nearly full subnet still works.
        for _ in range(64):
            candidate = str(ipaddress.IPv4Address(random.randint(first, last)))
            if candidate not in used:
                break
        else:
            for value in range(first, last + 1):
                candidate = str(ipaddress.IPv4Address(value))
                if candidate not in used:
                    break
            else:
                raise RuntimeError(f"subnet {subnet.id} has no free address")
        subnet.request_ip(candidate, owner)
        return candidate


def release_ip(subnet: Any, ip: str | None) -> None:
    if subnet is not None and ip:
        with STATE_LOCK:
            subnet.del_subnet_ip(ip)


def set_eni_ip(eni: Any, ip: str) -> None:
    """Point an ENI moto created at ``ip`` (its primary private address)."""
    eni.private_ip_address = ip
    eni.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": ip}]
    if getattr(eni, "private_dns_name", None):
        from moto.ec2.utils import generate_dns_from_ip

        eni.private_dns_name = generate_dns_from_ip(ip)
        eni.private_ip_addresses[0]["PrivateDnsName"] = eni.private_dns_name


def state(obj: Any, name: str, factory: Callable[[], Any]) -> Any:
    """Extension state hung on a moto object (a backend, a service...).

    Living on moto's own objects, it disappears with them on
    ``POST /moto-api/reset``, like the rest of moto's state.
    """
    with STATE_LOCK:
        value = obj.__dict__.get(name)
        if value is None:
            value = factory()
            obj.__dict__[name] = value
        return value


def random_hex(length: int) -> str:
    return "".join(random.choice("0123456789abcdef") for _ in range(length))
