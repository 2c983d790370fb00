"""scripts/demo: what the product does, on this machine, in a couple of minutes.

Acting as a team that owns a MySQL database on RDS, it builds the VPC, subnet group, security group
and instance, then opts the instance in with one tag, and follows the workflow that the tag starts
until it ends, with what the other parties see meanwhile: TiDB Cloud's private link connection (as
its API shows it to a TiDB Cloud user), the endpoint connection TiDB Cloud's account requests, the
acceptor's decision, the target's health. Then it removes the tag and follows the teardown until
nothing of the link is left on either side, unless --keep is given. The stack stays up afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from botocore.exceptions import ClientError

from . import scenario, stack, status

BOLD, DIM, GREEN, RED, CYAN, RESET = (("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[36m", "\033[0m")
                                     if sys.stdout.isatty() else ("",) * 6)


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


# What each Wait state waits for, by the name of the state.
WAITING_FOR = {"WaitForLoadBalancer": "the load balancer", "WaitForTargetHealth": "the target's health",
               "WaitForTiDBCloud": "TiDB Cloud's connection"}


class Sides:
    """What the other parties see while a workflow runs, polled between its steps; prints each change
    once: TiDB Cloud's connections to our endpoint services, the endpoint connections on them, the
    target's health, and the acceptor's decisions."""

    def __init__(self, aws: Callable[[str], Any], state: dict[str, Any], identifier: str, started: float,
                 tidb_connections: Callable[[], list[dict[str, Any]]] | None):
        self.aws, self.state, self.identifier, self.started = aws, state, identifier, started
        self.tidb_connections = tidb_connections
        self.seen: dict[tuple[str, str], str] = {}
        self.services: dict[str, str] = {}  # endpoint service ID -> name, once seen
        self.target_groups: set[str] = set()
        self.authorizations = Path(state["state_dir"]) / "logs/authorizations.jsonl"
        self.authorizations_offset = self.authorizations.stat().st_size if self.authorizations.exists() else 0

    def poll(self) -> None:
        now = time.time() - self.started
        current = dict(self._observe())
        for key, text in current.items():
            if self.seen.get(key) != text:
                print(f"  {DIM}{now:6.1f}s{RESET}    {CYAN}{text}{RESET}", flush=True)
        for key in [k for k in self.seen if k not in current and k[0] != "acceptor"]:
            print(f"  {DIM}{now:6.1f}s{RESET}    {CYAN}{self.seen[key].split(':')[0]}: gone{RESET}", flush=True)
            del self.seen[key]
        self.seen.update(current)

    def _observe(self) -> Iterator[tuple[tuple[str, str], str]]:
        ec2, elbv2 = self.aws("ec2"), self.aws("elbv2")
        for service in ec2.describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]:
            if scenario.managed_by(service.get("Tags", []), self.state["stack_name"], self.identifier):
                self.services[service["ServiceId"]] = service["ServiceName"]
        for connection in self._tidb_cloud_connections():
            yield ("tidb", connection["privateLinkConnectionId"]), (
                f"TiDB Cloud      connection {connection['privateLinkConnectionId']}: {connection.get('state', '?')}")
        for service_id in self.services:
            for c in ec2.describe_vpc_endpoint_connections(Filters=[
                    {"Name": "service-id", "Values": [service_id]}])["VpcEndpointConnections"]:
                if c["VpcEndpointState"] not in ("deleted", "rejected") or ("endpoint", c["VpcEndpointId"]) in self.seen:
                    yield ("endpoint", c["VpcEndpointId"]), (
                        f"endpoint connection {c['VpcEndpointId']} from account {c['VpcEndpointOwner']}: "
                        f"{c['VpcEndpointState']}")
        if not self.target_groups:
            self.target_groups = {g["TargetGroupArn"] for g in scenario.inventory(
                self.aws, self.state["stack_name"], self.identifier)["target_groups"]}
        for arn in self.target_groups:
            try:
                health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
            except ClientError:
                continue  # removed by the teardown
            for target in health:
                yield ("target", target["Target"]["Id"]), (
                    f"target {target['Target']['Id']}: {target['TargetHealth']['State']}")
        yield from self._acceptor_decisions()

    def _tidb_cloud_connections(self) -> list[dict[str, Any]]:
        if self.tidb_connections is None or not self.services:
            return []
        names = set(self.services.values())
        return [c for c in self.tidb_connections() if (c.get("awsEndpointService") or {}).get("name") in names]

    def _acceptor_decisions(self) -> Iterator[tuple[tuple[str, str], str]]:
        """Accept and Reject calls on our services, from the emulator's record of every authorized
        request (what CloudTrail would show in AWS, whatever the functions' log level)."""
        if not self.authorizations.exists():
            return
        with open(self.authorizations, "rb") as log:
            log.seek(self.authorizations_offset)
            text = log.read().decode(errors="replace")
        complete = text[: text.rfind("\n") + 1]
        self.authorizations_offset += len(complete.encode())
        for raw in complete.splitlines():
            entry = json.loads(raw)
            verb = {"ec2:AcceptVpcEndpointConnections": "accepted",
                    "ec2:RejectVpcEndpointConnections": "rejected"}.get(entry.get("action"))
            service = str(entry.get("resource", "")).rsplit("/", 1)[-1]
            if verb and entry.get("decision") == "Allowed" and service in self.services:
                yield ("acceptor", f"{service}-{entry['time']}"), (
                    f"acceptor        {verb} the request to {service} "
                    f"({entry['action'].split(':')[1]} as {entry['caller'].split('/')[1]})")


def follow(aws: Callable[[str], Any], execution_arn: str, started: float, sides: Sides) -> dict[str, Any]:
    """Prints the execution state by state, with elapsed time, and what the other sides see
    meanwhile, until it ends."""
    definition = json.loads(aws("stepfunctions").describe_state_machine_for_execution(
        executionArn=execution_arn)["definition"])
    for event in scenario.follow(aws, execution_arn, timeout=1800, poll=0.5, tick=sides.poll):
        kind = event["type"]
        if kind == "__end__":
            sides.poll()
            return event["execution"]
        now = time.time() - started
        details = _details(event)
        if kind.endswith("StateEntered"):
            name = details.get("name", "?")
            seconds = definition["States"].get(name, {}).get("Seconds")
            extra = f"{DIM}(waiting {seconds} s for {WAITING_FOR.get(name, 'a change')}){RESET}" \
                if kind == "WaitStateEntered" and seconds else ""
            print(f"  {DIM}{now:6.1f}s{RESET}  {name:<28} {extra}", flush=True)
        elif kind in ("LambdaFunctionFailed", "TaskFailed"):
            cause = details.get("cause") or ""
            try:
                cause = json.loads(cause).get("errorMessage", cause)
            except (ValueError, AttributeError):
                pass
            line(f"        {RED}{details.get('error', 'failed')}{RESET} {DIM}{cause[:300]}{RESET}")
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the link: do not untag and tear down at the end")
    args = parser.parse_args(argv)
    state_dir = Path(os.environ.get("LOCAL_STACK_DIR") or stack.ROOT / ".local").resolve()
    state = stack.load_state(state_dir)
    if state is None:
        print("demo: the local stack is not up (scripts/local-stack up)", file=sys.stderr)
        return 1
    state["state_dir"] = str(state_dir)
    aws = scenario.clients(state)
    api = scenario.tidb_cloud_api(aws, state["parameters"])
    # TiDB Cloud's connections of the stack's default cluster, as a TiDB Cloud user lists them.
    tidb_connections = (lambda: api.connections(state["parameters"]["TiDBCloudClusterId"])) if api else None

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
    line(f"TiDB Cloud: {stack.tidb_cloud_summary(state)}")

    heading(f"2. Opt in: tag it {scenario.OPT_IN_TAG}=true")
    line(f"{DIM}aws rds add-tags-to-resource --resource-name {db['DBInstanceArn']} "
         f"--tags Key={scenario.OPT_IN_TAG},Value=true{RESET}")
    started = time.time()
    execution = _run(aws, state, "ProvisionStateMachine", identifier, started, tidb_connections,
                     lambda: scenario.opt_in(aws, db["DBInstanceArn"]), "3. The provisioning, state by state")
    if execution is None:
        return 1
    output = json.loads(execution.get("output") or "{}")

    heading("4. Result")
    line(f"Endpoint service name: {BOLD}{output.get('endpoint_service_name')}{RESET}")
    _created(aws, state, identifier, zone, output)
    if tidb_connections is not None:
        _what_tidb_cloud_shows(tidb_connections(), output)
    _status(aws, state, identifier)
    if args.keep:
        _explore(state, state_dir, identifier, db["DBInstanceArn"])
        return 0

    heading(f"5. Opt out: remove the tag {scenario.OPT_IN_TAG} (--keep skips this)")
    line(f"{DIM}aws rds remove-tags-from-resource --resource-name {db['DBInstanceArn']} "
         f"--tag-keys {scenario.OPT_IN_TAG}{RESET}")
    started = time.time()
    teardown = _run(aws, state, "DeprovisionStateMachine", identifier, started, tidb_connections, lambda: aws(
        "rds").remove_tags_from_resource(ResourceName=db["DBInstanceArn"], TagKeys=[scenario.OPT_IN_TAG]),
        "6. The teardown, state by state")
    if teardown is None:
        return 1
    heading("7. What is left of the link")
    left = scenario.inventory(aws, state["stack_name"], identifier, network.security_group_id)
    connections = [c for c in tidb_connections() if (c.get("awsEndpointService") or {}).get("name")
                   == output.get("endpoint_service_name")] if tidb_connections else []
    if left.empty() and not connections:
        line(f"{GREEN}nothing{RESET}: no target group, load balancer, listener, security group or rule, endpoint "
             f"service{', TiDB Cloud connection' if tidb_connections else ''} of this stack for {identifier}; the database is as "
             "it was before the tag")
    else:
        line(f"{RED}left behind{RESET}: {left.summary()}; TiDB Cloud connections {connections}")
        return 1
    _status(aws, state, identifier)
    line(f"The stack keeps running: `scripts/demo --keep` leaves the link up to explore; "
         f"stop everything with {BOLD}scripts/local-stack down{RESET}")
    return 0


def _status(aws: Callable[[str], Any], state: dict[str, Any], identifier: str) -> None:
    heading("What `scripts/status --local` says of it")
    found = [link for link in status.links(aws, state) if link["db_instance_identifier"] == identifier]
    if found:
        status.show(found, state["stack_name"])
    else:
        line(f"{identifier}: no link (no endpoint service of stack {state['stack_name']} serves it)")


def _run(aws: Callable[[str], Any], state: dict[str, Any], machine: str, identifier: str, started: float,
         tidb_connections: Callable[[], list[dict[str, Any]]] | None, act: Callable[[], None],
         title: str) -> dict[str, Any] | None:
    """Does ``act`` (a tag change), then follows the execution it starts; None when it failed."""
    arn = state["state_machines"][machine]
    known = {e["executionArn"] for e in scenario.executions(aws, arn)}
    sides = Sides(aws, state, identifier, started, tidb_connections)
    # What exists before the change, printed once, so a teardown faster than one poll still shows
    # each part going.
    sides.poll()
    act()
    execution_arn = scenario.wait_for_execution(aws, arn, identifier, known, timeout=60)
    line(f"CloudTrail -> EventBridge started {execution_arn.split(':')[-1]}")
    heading(f"{title} {DIM}(indented: what TiDB Cloud, its AWS account, the acceptor and the target show "
            f"meanwhile){RESET}")
    execution = follow(aws, execution_arn, started, sides)
    elapsed = time.time() - started
    if execution["status"] != "SUCCEEDED":
        line(f"{RED}{execution['status']}{RESET} after {elapsed:.1f} s: {execution.get('error')}: {execution.get('cause')}")
        line(f"Function logs: {Path(state['state_dir']) / 'logs'}")
        return None
    line(f"{GREEN}SUCCEEDED{RESET} in {elapsed:.1f} s")
    return execution


def _what_tidb_cloud_shows(connections: list[dict[str, Any]], output: dict[str, Any]) -> None:
    for connection in connections:
        service = (connection.get("awsEndpointService") or {})
        if connection.get("privateLinkConnectionId") == output.get("tidb_cloud_connection_id"):
            line(f"In TiDB Cloud (GET .../privateLinkConnections): connection {BOLD}{connection['privateLinkConnectionId']}"
                 f"{RESET} {GREEN}{connection.get('state')}{RESET}, \"{connection.get('displayName')}\", endpoint service "
                 f"{service.get('name')}, TiDB Cloud's endpoint {service.get('endpointId', '?')}")


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
    except (ClientError, TimeoutError, OSError) as error:  # requests' errors are OSErrors
        print(f"demo: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
