"""scripts/demo: what the product does, on this machine, in about a minute.

Acting as a team that owns a MySQL database on RDS, it builds the VPC, subnet group, security group
and instance, then opts the instance in with one tag, and follows the workflow that the tag starts
until it ends. The stack stays up afterwards for exploring.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError

from . import scenario, stack

BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 5


def heading(text: str) -> None:
    print(f"\n{BOLD}{text}{RESET}", flush=True)


def line(text: str = "") -> None:
    print(f"  {text}", flush=True)


def _free_identifier(aws: Callable[[str], Any], base: str) -> str:
    existing = {db["DBInstanceIdentifier"] for db in aws("rds").describe_db_instances()["DBInstances"]}
    if base not in existing:
        return base
    n = 2
    while f"{base}-{n}" in existing:
        n += 1
    return f"{base}-{n}"


def _details(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


def follow(aws: Callable[[str], Any], execution_arn: str, started: float) -> dict[str, Any]:
    """Prints the execution state by state, with elapsed time, until it ends."""
    entered: dict[str, float] = {}
    for event in scenario.follow(aws, execution_arn, timeout=1800, poll=0.3):
        kind = event["type"]
        if kind == "__end__":
            return event["execution"]
        now = time.time() - started
        details = _details(event)
        if kind.endswith("StateEntered"):
            name = details.get("name", "?")
            entered[name] = now
            state_type = kind[: -len("StateEntered")]
            extra = ""
            if state_type == "Wait":
                definition = json.loads(aws("stepfunctions").describe_state_machine_for_execution(
                    executionArn=execution_arn)["definition"])
                seconds = definition["States"].get(name, {}).get("Seconds")
                what = "the target's health" if "TargetHealth" in name else "the load balancer"
                extra = f"{DIM}(waiting {seconds} s for {what}){RESET}" if seconds else ""
            print(f"  {DIM}{now:6.1f}s{RESET}  {name:<28} {extra}", end="" if state_type == "Task" else "\n", flush=True)
        elif kind.endswith("StateExited"):
            name = details.get("name", "?")
            if name in entered and kind.startswith("Task"):
                print(f"{DIM}{now - entered[name]:5.1f}s{RESET}", flush=True)
        elif kind in ("LambdaFunctionFailed", "TaskFailed"):
            print(f"{RED}{details.get('error', 'failed')}{RESET}", flush=True)
            cause = details.get("cause") or ""
            try:
                cause = json.loads(cause).get("errorMessage", cause)
            except (ValueError, AttributeError):
                pass
            if cause:
                line(f"          {DIM}{cause[:300]}{RESET}")
    raise AssertionError("unreachable")


def main() -> int:
    state_dir = Path(os.environ.get("LOCAL_STACK_DIR") or stack.ROOT / ".local").resolve()
    state = stack.load_state(state_dir)
    if state is None:
        print("demo: the local stack is not up (scripts/local-stack up)", file=sys.stderr)
        return 1
    aws = scenario.clients(state)
    provision_arn = state["state_machines"]["ProvisionStateMachine"]
    region = state["region"]

    heading("1. A team's MySQL database on RDS (as it exists before TiDB Cloud is involved)")
    identifier = _free_identifier(aws, "orders-db")
    network = scenario.create_network(aws, identifier.replace("-db", "") if identifier != "orders-db" else "orders")
    line(f"VPC {network.vpc_id} ({network.cidr}), subnets in {', '.join(network.subnets)}")
    line(f"DB subnet group {network.subnet_group}; security group {network.security_group_id} (MySQL from the VPC)")
    db = scenario.create_database(aws, network, identifier)
    address = db["Endpoint"]["Address"]
    ip = next((i["PrivateIpAddress"] for i in aws("ec2").describe_network_interfaces(Filters=[
        {"Name": "vpc-id", "Values": [network.vpc_id]}, {"Name": "description", "Values": ["RDSNetworkInterface"]}])[
        "NetworkInterfaces"]), "?")
    zone = aws("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["AvailabilityZone"]
    line(f"RDS instance {BOLD}{identifier}{RESET} (mysql {db['EngineVersion']}) in {zone}, {address} -> {ip}")

    heading(f"2. Opt in: tag it {scenario.OPT_IN_TAG}=true")
    line(f"{DIM}aws rds add-tags-to-resource --resource-name {db['DBInstanceArn']} "
         f"--tags Key={scenario.OPT_IN_TAG},Value=true{RESET}")
    known = {e["executionArn"] for e in scenario.executions(aws, provision_arn)}
    started = time.time()
    scenario.opt_in(aws, db["DBInstanceArn"])
    execution_arn = scenario.wait_for_execution(aws, provision_arn, identifier, known, timeout=60)
    line(f"CloudTrail -> EventBridge started {execution_arn.split(':')[-1]}")

    heading("3. The workflow, state by state")
    execution = follow(aws, execution_arn, started)
    elapsed = time.time() - started
    if execution["status"] != "SUCCEEDED":
        line(f"{RED}{execution['status']}{RESET} after {elapsed:.1f} s: {execution.get('error')}: {execution.get('cause')}")
        line(f"Function logs: {state_dir / 'logs'}")
        _explore(state, state_dir, identifier, db["DBInstanceArn"])
        return 1
    line(f"{GREEN}SUCCEEDED{RESET} in {elapsed:.1f} s")

    heading("4. Result")
    output = json.loads(execution.get("output") or "{}")
    line(f"Endpoint service name (give this to TiDB Cloud): {BOLD}{output.get('endpoint_service_name')}{RESET}")
    _created(aws, state, identifier, zone, output)
    _explore(state, state_dir, identifier, db["DBInstanceArn"])
    return 0


def _created(aws: Callable[[str], Any], state: dict[str, Any], identifier: str, db_zone: str,
             output: dict[str, Any]) -> None:
    elbv2, ec2 = aws("elbv2"), aws("ec2")
    name = state["stack_name"]

    def tagged(arn: str) -> bool:
        tags = elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"][0].get("Tags", [])
        return scenario.managed_by(tags, name, identifier)

    for group in elbv2.describe_target_groups()["TargetGroups"]:
        if tagged(group["TargetGroupArn"]):
            health = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
            targets = ", ".join(f"{t['Target']['Id']} ({_health(t['TargetHealth'])})" for t in health)
            line(f"target group     {group['TargetGroupName']}  {group['Protocol']}:{group['Port']} -> {targets}")
    shared = {s["availability_zone"] for s in output.get("subnets", []) if s.get("shared_with_tidb_cloud")}
    for balancer in elbv2.describe_load_balancers()["LoadBalancers"]:
        if tagged(balancer["LoadBalancerArn"]):
            zones = ", ".join(_zone(z["ZoneName"], db_zone, shared) for z in sorted(
                balancer["AvailabilityZones"], key=lambda z: z["ZoneName"]))
            line(f"load balancer    {balancer['LoadBalancerName']}  {balancer['Scheme']} {balancer['Type']} in {zones}")
    for group in ec2.describe_security_groups(Filters=[
            {"Name": "tag:tidb-privatelink:managed-by", "Values": [name]},
            {"Name": "tag:tidb-privatelink:db-instance", "Values": [identifier]}])["SecurityGroups"]:
        line(f"security group   {group['GroupId']}  (the NLB's; the database's group now admits it on its port)")
    for service in ec2.describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]:
        if scenario.managed_by(service.get("Tags", []), name, identifier):
            principals = [p["Principal"] for p in ec2.describe_vpc_endpoint_service_permissions(
                ServiceId=service["ServiceId"])["AllowedPrincipals"]]
            line(f"endpoint service {service['ServiceId']}  acceptance required, allows {', '.join(principals)}")


def _health(health: dict[str, Any]) -> str:
    state = health.get("State", "?")
    colour = GREEN if state == "healthy" else RED
    reason = f" {health['Reason']}" if health.get("Reason") else ""
    return f"{colour}{state}{RESET}{reason}"


def _zone(name: str, db_zone: str, shared: set[str]) -> str:
    """A zone of the load balancer, marked with what it is there for."""
    roles = (["the database's"] if name == db_zone else []) + (["shared with TiDB Cloud"] if name in shared else [])
    return f"{BOLD}{name}{RESET} ({', '.join(roles)})" if name == db_zone else f"{name} ({', '.join(roles) or 'DB subnet group'})"


def _explore(state: dict[str, Any], state_dir: Path, identifier: str, db_arn: str) -> None:
    env = state_dir / "env"
    heading("Explore (the stack keeps running)")
    line(f"source {env}        # AWS_ENDPOINT_URL, the admin's keys, PROVISION_STATE_MACHINE_ARN, ...")
    line("aws elbv2 describe-load-balancers")
    line("aws ec2 describe-vpc-endpoint-service-configurations")
    line("aws stepfunctions list-executions --state-machine-arn \"$PROVISION_STATE_MACHINE_ARN\"")
    line("Start an execution by hand (what the tag does for you):")
    line(f"  aws stepfunctions start-execution --endpoint-url \"$AWS_ENDPOINT_URL\" \\")
    line(f"    --state-machine-arn \"$PROVISION_STATE_MACHINE_ARN\" --input '{{\"db_instance_identifier\": \"{identifier}\"}}'")
    line("  or from Python:  boto3.client('stepfunctions').start_execution(stateMachineArn=os.environ[")
    line(f"    'PROVISION_STATE_MACHINE_ARN'], input=json.dumps({{'db_instance_identifier': '{identifier}'}}))")
    line("Tear it down again by removing the tag:")
    line(f"  aws rds remove-tags-from-resource --resource-name {db_arn} --tag-keys {scenario.OPT_IN_TAG}")
    line(f"Function logs: {state_dir / 'logs'}/<function>.log    emulator: {state_dir / 'logs' / 'emulator.log'}")
    line(f"Stop everything: {BOLD}scripts/local-stack down{RESET}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ClientError, TimeoutError) as error:
        print(f"demo: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
