"""An instance created with the opt-in tag is provisioned: RDS records no AddTagsToResource for
tags given at creation, so the CreatedWithOptInTag rule (CloudTrail's CreateDBInstance) starts the
provisioning, with that rule's own role.

    .venv/bin/python -m pytest -q tests/e2e/test_created_with_tag.py
"""

from __future__ import annotations

from typing import Any, Callable

from local_stack import scenario


def test_an_instance_created_with_the_opt_in_tag_is_provisioned(
        aws: Callable[[str], Any], driver: Any, network: scenario.Network) -> None:
    identifier = "born-tagged-db"
    known = driver.known("provision")
    scenario.create_database(aws, network, identifier, tags=[{"Key": scenario.OPT_IN_TAG, "Value": "true"}])
    [arn] = driver.new_executions("provision", identifier, known)
    execution = driver.run_to_end(arn, timeout=600)
    assert execution["status"] == "SUCCEEDED", f"{execution.get('error')}: {execution.get('cause')}"
    owned = driver.inventory(identifier)
    assert owned.counts()["endpoint_services"] == 1 and owned.counts()["load_balancers"] == 1, owned.summary()
