"""The emulator's control routes (launch.py), for the harnesses that start it: bootstrapping an
account, a service's credentials for a role, the problems the emulator met, and the routes that
answer their own status (faults, throttling)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

MANAGEMENT_KEY = ("testing", "testing")  # with enforcement off, the root user of 123456789012


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{url}: {error.code} {error.read().decode(errors='replace')}") from None


def bootstrap_account(endpoint: str, account: str, role_name: str = "OrganizationAccountAccessRole") -> str:
    """An administrator role in ``account`` that the management account may assume; its ARN."""
    return _post(f"{endpoint}/_emulator/accounts", {"account_id": account, "role_name": role_name})["role_arn"]


def service_credentials(endpoint: str, role_arn: str, service: str, session_name: str,
                        duration: int = 3600) -> dict[str, str]:
    """``AccessKeyId``/``SecretAccessKey``/``SessionToken`` of ``role_arn`` as ``service`` gets them."""
    return _post(f"{endpoint}/_emulator/service-credentials",
                 {"role_arn": role_arn, "service": service, "session_name": session_name, "duration": duration})


def problems(endpoint: str) -> list[str]:
    """Crashes, 5xx answers, logged exceptions and unmapped product calls, so far."""
    with urllib.request.urlopen(f"{endpoint}/_emulator/problems", timeout=10) as response:
        return json.loads(response.read())


def faults(endpoint: str, armed: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Arms the emulator's faults (patches/faults.py), or with None disarms them all; what is armed."""
    request = urllib.request.Request(f"{endpoint}/_emulator/faults", method="POST" if armed is not None else "DELETE",
                                     data=json.dumps({"faults": armed}).encode() if armed is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def route(endpoint: str, path: str, method: str = "GET", body: Any = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON answer) of a control route, e.g. ``/_emulator/throttling``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{endpoint}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
