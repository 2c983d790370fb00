"""Fixtures: one patched emulator per test session, and AWS clients acting as
a fresh random account per test (the same isolation the Rust tests use)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import control  # noqa: E402  (the emulator's control routes)

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH = os.path.join(HERE, "launch.py")
REGION = "us-east-1"


@dataclass
class Emulator:
    url: str
    port: int
    dns_port: int
    process: subprocess.Popen


def start_emulator(*extra: str, port: int = 0, dns_port: int = 0) -> tuple[subprocess.Popen, dict[str, Any]]:
    # stderr goes to a file: a pipe nobody drains would block the server once full.
    log = tempfile.NamedTemporaryFile(prefix="emulator-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, LAUNCH, "--port", str(port), "--dns-port", str(dns_port), *extra],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    line = process.stdout.readline()  # the ready line, once both servers listen
    if not line:
        process.wait(timeout=10)
        with open(log.name, encoding="utf-8", errors="replace") as err:
            raise RuntimeError(f"emulator did not start: {err.read()}")
    return process, json.loads(line)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    process, ready = start_emulator("--watch-pid", str(os.getpid()))
    url = f"http://127.0.0.1:{ready['port']}"
    try:
        yield Emulator(url, ready["port"], ready["dns_port"], process)
        found = control.problems(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    # Checked once all tests ran: a crash of the emulator fails the run even if no test saw it.
    assert not found, "the emulator met problems:\n" + "\n".join(found)


def _config() -> Config:
    return Config(retries={"max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="session")
def session_for(emulator: Emulator) -> Callable[[str], Callable[..., Any]]:
    """account id -> factory(service) of clients acting as that account."""
    return session_factory(emulator.url)


def session_factory(url: str) -> Callable[[str], Callable[..., Any]]:
    """account id -> factory(service) of clients acting as that account, on the emulator at ``url``."""
    sts = boto3.client(
        "sts", endpoint_url=url, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing", config=_config(),
    )

    def for_account(account_id: str) -> Callable[..., Any]:
        role_arn = control.bootstrap_account(url, account_id)
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="emulator-test")["Credentials"]

        def client(service: str, config: Config | None = None) -> Any:
            return boto3.client(
                service, endpoint_url=url, region_name=REGION,
                aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"], config=_config().merge(config) if config else _config(),
            )

        return client

    return for_account


def new_account() -> str:
    return str(random.randint(10**11, 10**12 - 1))


@pytest.fixture
def aws(session_for: Callable[[str], Callable[..., Any]]) -> Callable[..., Any]:
    """Clients for a fresh account; ``aws.account`` is its id."""
    account = new_account()
    factory = session_for(account)
    factory.account = account  # type: ignore[attr-defined]
    return factory


@pytest.fixture
def other_aws(session_for: Callable[[str], Callable[..., Any]]) -> Callable[..., Any]:
    account = new_account()
    factory = session_for(account)
    factory.account = account  # type: ignore[attr-defined]
    return factory


def make_network(ec2: Any, cidr: str = "10.20.0.0/16", subnets: tuple[tuple[str, str], ...] = (
    ("10.20.1.0/24", "us-east-1a"), ("10.20.2.0/24", "us-east-1b"),
)) -> dict[str, Any]:
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=block, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for block, zone in subnets
    ]
    sg = ec2.create_security_group(GroupName=f"sg-{random.randint(0, 10**6)}", Description="t", VpcId=vpc)["GroupId"]
    return {"vpc": vpc, "subnets": subnet_ids, "sg": sg}
