"""A small wave under API throttling: N instances (default 5, ``E2E_WAVE_SIZE``) tagged at once,
then untagged at once, while the emulator throttles Step Functions, EC2, ELBv2 and RDS by token
buckets. The buckets are AWS's (tests/emulator/README.md) with those of the calls a provisioning
repeats shrunk, so that five instances meet throttling as a hundred meet AWS's own figures.
Every throttled call must be retried to success: each instance provisioned exactly once, no
execution failed, and nothing left after the untagging. (scripts/bench runs the full wave.)
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Callable

import pytest

from local_stack import scenario, wave

Aws = Callable[[str], Any]
N = int(os.environ.get("E2E_WAVE_SIZE", "5"))
BUCKETS = {"elasticloadbalancing:Describe*": [2, 0.5], "elasticloadbalancing:*": [2, 0.5],
           "ec2:Describe*": [3, 1], "ec2:*": [2, 0.5], "rds:*": [4, 1]}
KINDS = ("target_group", "load_balancer", "endpoint_service", "security_group")


def report(line: str) -> None:
    print(f"E2E: {line}", flush=True)


@pytest.fixture(scope="module")
def databases(aws: Aws) -> dict[str, str]:
    network = scenario.create_network(aws, "wave", "10.52")
    return wave.create_databases(aws, network, "wave", N)


def per_instance(found: Counter[tuple[str, str]], identifiers: list[str]) -> dict[str, dict[str, int]]:
    return {i: {kind: found[(kind, i)] for kind in (*KINDS, "turn_lease")} for i in identifiers}


def test_a_wave_under_throttling_provisions_each_instance_once_and_untagging_leaves_nothing(
        aws: Aws, stack: dict[str, Any], driver: Any, databases: dict[str, str]) -> None:
    endpoint, identifiers = stack["endpoint"], sorted(databases)
    wave.throttle(endpoint, BUCKETS)
    try:
        tagged = wave.run(aws, endpoint, driver.machine("provision"), identifiers,
                          lambda i: scenario.opt_in(aws, databases[i]))
        wave.throttle(endpoint, None)  # the checks below read without throttling
        after_tagging = wave.owned(aws, stack["stack_name"])
        wave.throttle(endpoint, BUCKETS)
        untagged = wave.run(aws, endpoint, driver.machine("deprovision"), identifiers,
                            lambda i: wave.untag(aws, databases[i]))
    finally:
        wave.throttle(endpoint, None)
    after_untagging = wave.owned(aws, stack["stack_name"])
    retried = sum((wave.retried_errors(wave.history(aws, e["executionArn"]))
                   for e in [*tagged.executions.values(), *untagged.executions.values()]), Counter())
    report(f"wave of {N} under throttling: tagging {wave.summary(tagged)}; untagging {wave.summary(untagged)}; "
           f"task attempts retried by the state machines: {dict(retried)}")

    assert tagged.failed == [] and untagged.failed == [], (tagged.failed, untagged.failed)
    assert tagged.throttled() > 0, "the buckets never ran dry: nothing shows that throttling is retried"
    assert tagged.product_calls() > 0
    assert per_instance(after_tagging, identifiers) == {
        i: {**dict.fromkeys(KINDS, 1), "turn_lease": 0} for i in identifiers}, "provisioned exactly once, turns released"
    assert not [k for k in after_untagging if k[1] in identifiers], after_untagging
