"""API throttling by token buckets (patches/throttling.py): each service's error shape, per
account, one bucket per action (RDS: one for all), off by default, configured at start or by the
control route; every call counted."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator
from unittest import mock

import pytest
from botocore.exceptions import ClientError

import control
from conftest import make_network, new_account, session_factory, start_emulator
from patches.throttling import Bucket, figures

# Started with these buckets; the tests drain them (refill 0: nothing comes back during a test).
AT_START = {"buckets": {"elasticloadbalancing:DescribeLoadBalancers": [3, 0], "ec2:DescribeVpcs": [2, 0],
                        "rds:*": [2, 0], "states:ListStateMachines": [1, 0]}}


def route(url: str, method: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    return control.route(url, "/_emulator/throttling", method, body)


@pytest.fixture(scope="module")
def throttled() -> Iterator[str]:
    with mock.patch.dict(os.environ, {"EMULATOR_THROTTLING": json.dumps(AT_START)}):
        process, ready = start_emulator("--watch-pid", str(os.getpid()))
    url = f"http://127.0.0.1:{ready['port']}"
    try:
        yield url
        found = control.problems(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert not found, "\n".join(found)


def refused(call: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as error:
        call()
    response = error.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_each_service_throttles_in_its_own_error_shape_per_account(throttled: str) -> None:
    accounts = session_factory(throttled)
    aws, other = accounts(new_account()), accounts(new_account())
    elbv2 = aws("elbv2")
    for _ in range(3):
        elbv2.describe_load_balancers()
    assert refused(elbv2.describe_load_balancers) == ("ThrottlingException", "Rate exceeded", 400)
    # One bucket per action, and per account.
    elbv2.describe_target_groups()
    other("elbv2").describe_load_balancers()

    ec2 = aws("ec2")
    ec2.describe_vpcs()
    ec2.describe_vpcs()
    assert refused(ec2.describe_vpcs) == ("RequestLimitExceeded", "Request limit exceeded.", 503)
    make_network(ec2)  # other EC2 actions keep their own buckets

    rds = aws("rds")
    rds.describe_db_instances()
    rds.describe_db_subnet_groups()
    # RDS: one bucket for the whole API.
    assert refused(rds.describe_db_clusters) == ("ThrottlingException", "Rate exceeded", 400)

    sfn = aws("stepfunctions")
    sfn.list_state_machines()
    assert refused(sfn.list_state_machines)[::2] == ("ThrottlingException", 400)

    status, answer = route(throttled, "GET")
    assert status == 200 and answer["enabled"] is True
    # (The clients retry once: each refused call was refused twice.)
    assert answer["throttled"] == {"elasticloadbalancing:DescribeLoadBalancers": 2, "ec2:DescribeVpcs": 2,
                                   "rds:DescribeDBClusters": 2, "states:ListStateMachines": 2}
    assert answer["calls"]["elasticloadbalancing:DescribeLoadBalancers"] == 6
    # The 503s are answers, not crashes: the fixture finds no problem at the end.


def test_the_route_configures_and_turns_it_off(throttled: str) -> None:
    assert route(throttled, "POST", {"buckets": {"ec2:DescribeSubnets": [1, 0]}})[0] == 200
    ec2 = session_factory(throttled)(new_account())("ec2")
    ec2.describe_subnets()
    assert refused(ec2.describe_subnets)[0] == "RequestLimitExceeded"
    assert route(throttled, "DELETE") == (200, {"enabled": False, "buckets": {}, "calls": {}, "product_calls": {},
                                                "throttled": {}})
    for _ in range(5):
        ec2.describe_subnets()
    assert route(throttled, "GET")[1]["calls"] == {"ec2:DescribeSubnets": 5}

    status, answer = route(throttled, "POST", {"buckets": {"ec2:DescribeSubnets": [0, 1]}})
    assert status == 400 and "ec2:DescribeSubnets" in answer["message"]
    assert route(throttled, "POST", {"buckets": {"DescribeSubnets": [5, 1]}})[0] == 400


def test_a_bucket_refills_at_its_rate_up_to_its_size() -> None:
    bucket = Bucket(size=2, refill=4, tokens=2, at=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.25) and not bucket.take(0.25)  # one token back after 1/4 s
    assert [bucket.take(10.0) for _ in range(3)] == [True, True, False]  # never more than its size


def test_aws_figures_from_the_most_specific_key() -> None:
    assert figures("states:StartExecution") == ("states:StartExecution", [1300, 300])
    assert figures("states:TagResource") == ("states:TagResource", [100, 1])
    assert figures("ec2:DescribeSubnets") == ("ec2:DescribeSubnets", [100, 20])
    assert figures("ec2:CreateSecurityGroup") == ("ec2:CreateSecurityGroup", [50, 5])
    assert figures("elasticloadbalancing:DescribeTargetHealth") == ("elasticloadbalancing:DescribeTargetHealth", [40, 10])
    assert figures("rds:DescribeDBInstances") == ("rds:*", [300, 12])
    assert figures("lambda:Invoke") is None
