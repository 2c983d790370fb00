"""scripts/status: every link this stack manages, and whether it is healthy.

    scripts/status [--stack-name NAME] [--json]     a deployed stack (the usual AWS credential chain)
    scripts/status --local [--json]                 the local stack (scripts/local-stack up)

For each managed instance or DB cluster (``cluster:<id>``): the endpoint service (name, state), the load balancer (state, zones),
the target's address and health, the endpoint connections (owner, state), TiDB Cloud's private
link connection (when the stack has a TiDB Cloud API key) and the last execution of each
workflow; for the stack, how many failed invocations its queue keeps. Exits 1 when any link is
not healthy, 0 otherwise (also when there is none).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from . import scenario, stack

MANAGED_BY = "tidb-privatelink:managed-by"
TIDB_CLOUD_CLUSTER_TAG = "tidb-privatelink:tidb-cloud-cluster"


def deployed(stack_name: str) -> tuple[Callable[[str], Any], dict[str, Any]]:
    """Clients and what status needs to know of a CloudFormation stack."""
    import boto3

    session = boto3.Session()
    described = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])}
    return session.client, {"stack_name": stack_name, "parameters": parameters, "outputs": outputs, "state_machines": {
        "ProvisionStateMachine": outputs["ProvisionStateMachineArn"],
        "DeprovisionStateMachine": outputs["DeprovisionStateMachineArn"]}}


def tidb_cloud_connections(aws: Callable[[str], Any], info: dict[str, Any], clusters: set[str]) -> list[dict] | None:
    """TiDB Cloud's connections of the clusters the links use, or None without an API key."""
    api = scenario.tidb_cloud_api(aws, info["parameters"])
    return None if api is None else [c for cluster in sorted(clusters) for c in api.connections(cluster)]


def last_executions(aws: Callable[[str], Any], info: dict[str, Any], identifiers: set[str]) -> dict[str, dict]:
    """(identifier, workflow) -> the most recent execution about it, among each workflow's latest 50."""
    sfn, out = aws("stepfunctions"), {}
    for logical_id, workflow in (("ProvisionStateMachine", "provision"), ("DeprovisionStateMachine", "teardown")):
        listed = sfn.list_executions(stateMachineArn=info["state_machines"][logical_id], maxResults=50)["executions"]
        for execution in listed:  # newest first
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            identifier = scenario.instance_of_input(json.loads(described.get("input") or "{}"))
            if identifier in identifiers and (identifier, workflow) not in out:
                out[(identifier, workflow)] = {"status": described["status"], "started": str(described["startDate"]),
                                               "error": described.get("error")}
    return out


def links(aws: Callable[[str], Any], info: dict[str, Any]) -> list[dict[str, Any]]:
    name = info["stack_name"]
    ec2, elbv2 = aws("ec2"), aws("elbv2")
    ours = [{"Name": f"tag:{MANAGED_BY}", "Values": [name]}]
    services = ec2.describe_vpc_endpoint_service_configurations(Filters=ours)["ServiceConfigurations"]
    balancers = [b for page in elbv2.get_paginator("describe_load_balancers").paginate() for b in page["LoadBalancers"]]
    groups = [g for page in elbv2.get_paginator("describe_target_groups").paginate() for g in page["TargetGroups"]]
    tags = scenario.elb_tags(elbv2, [b["LoadBalancerArn"] for b in balancers] + [g["TargetGroupArn"] for g in groups])
    mine = lambda arn, identifier: scenario.managed_by(tags.get(arn, {}), name, identifier)  # noqa: E731
    found = []
    for service in services:
        service_tags = {t["Key"]: t["Value"] for t in service.get("Tags", [])}
        identifier = service_tags.get("tidb-privatelink:db-instance") or (
            "cluster:" + service_tags.get("tidb-privatelink:db-cluster", "?"))
        balancer = next((b for b in balancers if mine(b["LoadBalancerArn"], identifier)), None)
        group = next((g for g in groups if mine(g["TargetGroupArn"], identifier)), None)
        targets = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])[
            "TargetHealthDescriptions"] if group else []
        connections = ec2.describe_vpc_endpoint_connections(Filters=[
            {"Name": "service-id", "Values": [service["ServiceId"]]}])["VpcEndpointConnections"]
        found.append({
            "db_instance_identifier": identifier,
            "endpoint_service": {"id": service["ServiceId"], "name": service["ServiceName"],
                                 "state": service["ServiceState"]},
            "load_balancer": balancer and {"name": balancer["LoadBalancerName"], "state": balancer["State"]["Code"],
                                           "zones": sorted(z["ZoneName"] for z in balancer["AvailabilityZones"])},
            "targets": [{"address": f"{t['Target']['Id']}:{t['Target'].get('Port')}", "state": t["TargetHealth"]["State"],
                         "reason": t["TargetHealth"].get("Reason")} for t in targets],
            "endpoint_connections": [{"endpoint": c["VpcEndpointId"], "owner": c["VpcEndpointOwner"],
                                      "state": c["VpcEndpointState"]} for c in connections],
            "tidb_cloud_cluster": service_tags.get(TIDB_CLOUD_CLUSTER_TAG),
        })
    clusters = {link["tidb_cloud_cluster"] for link in found if link["tidb_cloud_cluster"]}
    tidb = tidb_cloud_connections(aws, info, clusters) if found else None
    executions = last_executions(aws, info, {link["db_instance_identifier"] for link in found}) if found else {}
    for link in found:
        identifier = link["db_instance_identifier"]
        if tidb is not None:
            link["tidb_cloud_connection"] = next(
                ({"id": c.get("privateLinkConnectionId"), "state": c.get("state")} for c in tidb
                 if (c.get("awsEndpointService") or {}).get("name") == link["endpoint_service"]["name"]), None)
        link["last_provisioning"] = executions.get((identifier, "provision"))
        link["last_teardown"] = executions.get((identifier, "teardown"))
        link["problems"] = problems(link, tidb is not None)
    return found


def failed_invocations(aws: Callable[[str], Any], info: dict[str, Any]) -> int | None:
    """How many invocation records the failed-invocations queue holds (None: a stack without it)."""
    url = (info.get("outputs") or {}).get("FailedInvocationsQueueUrl")
    if not url:
        return None
    attributes = aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def problems(link: dict[str, Any], with_tidb_cloud: bool) -> list[str]:
    """Why the link is not healthy (empty when it is)."""
    out = []
    if link["endpoint_service"]["state"] != "Available":
        out.append(f"endpoint service {link['endpoint_service']['state']}")
    if not link["load_balancer"] or link["load_balancer"]["state"] != "active":
        out.append(f"load balancer {(link['load_balancer'] or {}).get('state', 'missing')}")
    if not any(t["state"] == "healthy" for t in link["targets"]):
        out.append("no healthy target: " + (", ".join(f"{t['address']} {t['state']}" for t in link["targets"]) or "none"))
    if with_tidb_cloud:
        connection = link.get("tidb_cloud_connection") or {}
        if connection.get("state") != "ACTIVE":
            out.append(f"TiDB Cloud connection {connection.get('state', 'missing')}")
        if not any(c["state"] == "available" for c in link["endpoint_connections"]):
            out.append("no available endpoint connection")
    return out


def show(found: list[dict[str, Any]], stack_name: str) -> None:
    if not found:
        print(f"stack {stack_name}: no links")
    for link in found:
        verdict = "healthy" if not link["problems"] else "NOT HEALTHY: " + "; ".join(link["problems"])
        print(f"{link['db_instance_identifier']}: {verdict}")
        service, balancer = link["endpoint_service"], link["load_balancer"] or {}
        print(f"  endpoint service  {service['name']} ({service['state']})")
        print(f"  load balancer     {balancer.get('name', '-')} ({balancer.get('state', 'missing')}) in "
              f"{', '.join(balancer.get('zones', [])) or '-'}")
        for target in link["targets"] or [{"address": "-", "state": "none", "reason": None}]:
            print(f"  target            {target['address']} {target['state']}{' ' + target['reason'] if target['reason'] else ''}")
        for connection in link["endpoint_connections"]:
            print(f"  endpoint conn.    {connection['endpoint']} from {connection['owner']}: {connection['state']}")
        if "tidb_cloud_connection" in link:
            connection = link["tidb_cloud_connection"] or {}
            print(f"  TiDB Cloud        {connection.get('id', '-')}: {connection.get('state', 'missing')}")
        for key, label in (("last_provisioning", "last provisioning"), ("last_teardown", "last teardown")):
            execution = link[key]
            if execution:
                print(f"  {label:<17} {execution['status']} {execution['started']}"
                      f"{' ' + execution['error'] if execution['error'] else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack-name", default="tidb-privatelink", help="the deployed stack (default tidb-privatelink)")
    parser.add_argument("--local", action="store_true", help="the local stack instead (LOCAL_STACK_DIR, default .local)")
    parser.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    args = parser.parse_args(argv)
    if args.local:
        state = stack.load_state(Path(os.environ.get("LOCAL_STACK_DIR") or stack.ROOT / ".local").resolve())
        if state is None:
            print("status: the local stack is not up (scripts/local-stack up)", file=sys.stderr)
            return 3
        aws, info = scenario.clients(state), state
    else:
        aws, info = deployed(args.stack_name)
    found, kept = links(aws, info), failed_invocations(aws, info)
    if args.json:
        print(json.dumps({"stack": info["stack_name"], "links": found, "failed_invocations": kept}, indent=2,
                         default=str))
    else:
        show(found, info["stack_name"])
        if kept:
            print(f"failed invocations kept: {kept} (their events and errors: {info['outputs']['FailedInvocationsQueueUrl']})")
    return 1 if any(link["problems"] for link in found) else 0


if __name__ == "__main__":
    sys.exit(main())
