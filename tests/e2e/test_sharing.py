"""LoadBalancerSharing=per-vpc, on a local stack as `scripts/local-stack up --parameter
LoadBalancerSharing=per-vpc` starts it (TiDB Cloud played by the double): the databases opted in
within one VPC share one load balancer, its security group, one endpoint service and one TiDB Cloud
connection; each keeps a target group of its own and gets a listener of its own, on its own port
when no listener holds it, else on the lowest free port of ListenerPortRange (default 3306-3999),
recorded on the database (tag ``tidb-privatelink:port``) and in the provisioning's output.
Untagging a database removes its listener and target group; the last one's teardown removes the
shared parts too.

``SHARING_DATABASES`` databases share a VPC in the main test (default 5; `scripts/bench sharing`
compares both modes with 20). Timings are printed with an ``E2E:`` prefix (``pytest -s``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from local_stack import scenario, wave
from local_stack.stack import control

N = int(os.environ.get("SHARING_DATABASES", "5"))
SHARED = ("load_balancers", "security_groups", "endpoint_services")
# What a failure message names of each kind found.
SHOWN = {"target_groups": "TargetGroupName", "load_balancers": "LoadBalancerName", "listeners": "Port",
         "security_groups": "GroupId", "db_sg_rules": "SecurityGroupRuleId", "endpoint_services": "ServiceId",
         "turn_leases": "db_instance_identifier"}


def report(line: str) -> None:
    print(f"E2E: {line}", flush=True)


def act_on_all(per_vpc: dict[str, Any], dbs: dict[str, str], workflow: str) -> wave.Wave:
    """Every database of ``dbs`` (identifier -> ARN) opted in to the double's cluster
    (``provision``) or out (``deprovision``) at once, and each execution followed to its end:
    all must succeed."""
    done = wave.at_once(per_vpc["aws"], per_vpc["stack"], dbs, workflow, per_vpc["double"].cluster, poll=1.0)
    assert not done.failed, f"{workflow} of {done.failed} failed: {done.failures()}"
    return done


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


class Owned:
    """What the stack owns for the databases of one VPC, read at once: the VPC's shared parts
    (tagged ``vpc=<id>``) and each database's own, their ELB tags, TiDB Cloud's connections (the
    double's) to its endpoint services, and ``strays``: load balancers, target groups and security
    groups of the stack in the VPC that are neither."""

    def __init__(self, per_vpc: dict[str, Any], network: scenario.Network, identifiers: list[str],
                 also_groups: set[str] = frozenset()):  # type: ignore[assignment]
        self.stack, self.vpc = per_vpc["stack"]["stack_name"], network.vpc_id
        aws, managed_by = per_vpc["aws"], "tidb-privatelink:managed-by"
        elbv2, ec2 = aws("elbv2"), aws("ec2")
        self.found = scenario.inventory(aws, self.stack, [scenario.vpc_key(self.vpc), *identifiers],
                                        network.security_group_id, also_groups)
        self.elb = scenario.elb_tags(elbv2, [r[key] for kind, key in (
            ("load_balancers", "LoadBalancerArn"), ("target_groups", "TargetGroupArn"), ("listeners", "ListenerArn"))
            for r in self.found[kind]])
        services = {s["ServiceName"] for s in self.found["endpoint_services"]}
        self.connections = [c for c in per_vpc["double"].state()["connections"] if c["service_name"] in services]
        in_vpc = [r[key] for r in (*elbv2.describe_load_balancers()["LoadBalancers"],
                                   *elbv2.describe_target_groups()["TargetGroups"]) if r.get("VpcId") == self.vpc
                  for key in ("LoadBalancerArn", "TargetGroupArn") if key in r]
        groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [self.vpc]},
                                                       {"Name": f"tag:{managed_by}", "Values": [self.stack]}])
        ours = {arn for arn, tags in scenario.elb_tags(elbv2, in_vpc).items() if tags.get(managed_by) == self.stack}
        ours |= {g["GroupId"] for g in groups["SecurityGroups"]}
        self.strays = sorted(ours - set(self.elb) - {g["GroupId"] for g in self.found["security_groups"]})

    def __str__(self) -> str:
        shown = {kind: [str(r.get(key)) for r in self.found[kind]] for kind, key in SHOWN.items() if self.found[kind]}
        return (f"VPC {self.vpc}: {self.found.summary()} {shown}; TiDB Cloud connections "
                f"{[(c['id'], c['state'], c['service_name']) for c in self.connections]}; strays {self.strays}")

    def shared_parts(self) -> tuple[dict[str, Any], ...]:
        """The VPC's one load balancer, security group, endpoint service and TiDB Cloud connection
        (ACTIVE), each the VPC's (tagged managed-by and vpc, not a database's)."""
        assert [len(self.found[kind]) for kind in SHARED] == [1, 1, 1] and not self.strays, (
            f"not one {'/'.join(SHARED)}: {self}")
        [lb], [group], [service] = (self.found[kind] for kind in SHARED)
        owner = {"tidb-privatelink:managed-by": self.stack, "tidb-privatelink:vpc": self.vpc}
        for what, tags in (("load balancer", self.elb[lb["LoadBalancerArn"]]), ("security group", tags_of(group)),
                           ("endpoint service", tags_of(service))):
            owners = {k: v for k, v in tags.items()
                      if k in (*owner, "tidb-privatelink:db-instance", "tidb-privatelink:db-cluster")}
            assert owners == owner, f"the {what}'s tags: {tags}"
        assert (lb["VpcId"], lb["Scheme"], lb["Type"]) == (self.vpc, "internal", "network"), lb
        assert group["VpcId"] == self.vpc, group
        assert lb["LoadBalancerName"].startswith("tidbpl-vpc-"), lb["LoadBalancerName"]
        assert service["NetworkLoadBalancerArns"] == [lb["LoadBalancerArn"]], service
        assert [c["state"] for c in self.connections] == ["ACTIVE"], f"TiDB Cloud's connections: {self}"
        return lb, group, service, self.connections[0]

    def listeners(self) -> dict[str, dict[str, Any]]:
        """The listeners by the target group they forward to."""
        return {a["TargetGroupArn"]: l for l in self.found["listeners"] for a in l["DefaultActions"]
                if a.get("TargetGroupArn")}

    def ports(self) -> list[int]:
        return sorted(l["Port"] for l in self.found["listeners"])

    def assert_gone(self) -> None:
        assert self.found.empty() and not self.connections and not self.strays, f"left: {self}"


def took(done: wave.Wave) -> str:
    each = sorted((e["stopDate"] - e["startDate"]).total_seconds() for e in done.executions.values())
    return f"{done.seconds_to_last:.1f} s until the last ended (each execution {each[0]:.1f}-{each[-1]:.1f} s)"


# Each target is `initial` for this many health answers (the emulator's default is 1), so that
# every health wait spans several polls, as AWS's minutes of health checks do.
INITIAL_HEALTH_ANSWERS = 3


def spans(driver: Any, arn: str) -> dict[str, tuple[Any, Any]]:
    """When the execution held the VPC's turn (``shared``: from its first shared part to giving the
    turn back) and waited for its target's health (``health``)."""
    entered: dict[str, list[Any]] = {}
    for event in driver.history(arn):
        if event["type"].endswith("StateEntered"):
            entered.setdefault(event["stateEnteredEventDetails"]["name"], []).append(event["timestamp"])
    return {"shared": (entered["CreateSecurityGroups"][0], entered["SharedTurnGivenBack"][0]),
            "health": (entered["StartTargetHealthWait"][0], entered["IsEndpointServiceThere"][0])}


def assert_turns_only_on_the_shared_parts(driver: Any, done: wave.Wave) -> None:
    """The executions held the VPC's turn one after another, and one went on with the shared parts
    while another waited for its target's health."""
    held = {i: spans(driver, e["executionArn"]) for i, e in done.executions.items()}
    by_start = sorted(held, key=lambda i: held[i]["shared"][0])
    for before, after in zip(by_start, by_start[1:]):
        assert held[before]["shared"][1] <= held[after]["shared"][0], (
            f"{before} and {after} held the VPC's turn at once: {held[before]['shared']} {held[after]['shared']}")
    overlapping = [(waiting, going) for waiting in held for going in held if going != waiting
                   and held[waiting]["health"][0] < held[going]["shared"][0] < held[waiting]["health"][1]]
    assert overlapping, f"no database changed the shared parts while another waited for its health: {held}"
    report(f"per-vpc: {len(overlapping)} times one database had the VPC's turn while another waited for health")


def test_the_databases_of_a_vpc_share_one_link_until_the_last_is_untagged(per_vpc: dict[str, Any]) -> None:
    aws, driver = per_vpc["aws"], per_vpc["driver"]
    network = scenario.create_network(aws, "shared", "10.71")
    dbs = wave.create_databases(aws, network, "shared", N)
    ids = sorted(dbs)

    endpoint, config = per_vpc["stack"]["endpoint"], "/moto-api/config"
    slow_health = {"elbv2": {"target_initial_describes": INITIAL_HEALTH_ANSWERS}}
    assert control.route(endpoint, config, "POST", slow_health)[0] in (200, 201)
    try:
        tagged = act_on_all(per_vpc, dbs, "provision")
    finally:
        control.route(endpoint, config, "POST", {"elbv2": {}})
    report(f"per-vpc: provisioning {N} databases of one VPC, tagged at once: {took(tagged)}")
    assert_turns_only_on_the_shared_parts(driver, tagged)
    outputs = {i: json.loads(e["output"]) for i, e in tagged.executions.items()}
    seen = Owned(per_vpc, network, ids)
    lb, group, service, connection = seen.shared_parts()
    counts = seen.found.counts()
    assert (counts["target_groups"], counts["listeners"], counts["turn_leases"]) == (N, N, 0), str(seen)
    # Every database on port 3306: the first keeps it, the others take the lowest free ones.
    assert seen.ports() == list(range(3306, 3306 + N)), str(seen)
    listeners, groups = seen.listeners(), {g["TargetGroupArn"]: g for g in seen.found["target_groups"]}
    for i in ids:
        out, tags, arn = outputs[i], driver.instance_tags(i), outputs[i]["target_group_arn"]
        assert arn in listeners and arn in groups, f"{i}'s target group {arn}: no such group, or no listener: {seen}"
        assert (out["load_balancer_arn"], out["endpoint_service_name"], out.get("tidb_cloud_connection_id")) == (
            lb["LoadBalancerArn"], service["ServiceName"], connection["id"]), out
        assert out.get("port") == listeners[arn]["Port"] == int(tags.get("tidb-privatelink:port", -1)), (
            f"{i}: output port {out.get('port')}, listener port {listeners[arn]['Port']}, instance tags {tags}")
        assert [tags.get(f"tidb-privatelink:{k}") for k in ("endpoint-service", "load-balancer", "target-group")] == [
            service["ServiceName"], lb["LoadBalancerName"], groups[arn]["TargetGroupName"]], f"{i}'s tags: {tags}"
        for what, resource in (("listener", listeners[arn]["ListenerArn"]), ("target group", arn)):
            assert scenario.managed_by(seen.elb[resource], seen.stack, i), f"{i}'s {what} tags: {seen.elb[resource]}"
        health = aws("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        assert health and {h["TargetHealth"]["State"] for h in health} == {"healthy"}, f"{i}'s targets: {health}"

    # Untagged one by one: the shared parts stay while a database's listener remains.
    remaining, timings = list(ids), []
    for i in ids:
        untagged = act_on_all(per_vpc, {i: dbs[i]}, "deprovision")
        timings.append(f"{i} {untagged.seconds_to_last:.1f} s")
        remaining.remove(i)
        after = Owned(per_vpc, network, ids, {group["GroupId"]})
        if not remaining:
            break
        still = after.shared_parts()
        assert [still[0]["LoadBalancerArn"], still[1]["GroupId"], still[2]["ServiceId"], still[3]["id"]] == [
            lb["LoadBalancerArn"], group["GroupId"], service["ServiceId"], connection["id"]], str(after)
        left = sorted(outputs[r]["target_group_arn"] for r in remaining)
        assert sorted(after.listeners()) == left and sorted(g["TargetGroupArn"] for g in after.found["target_groups"]) \
            == left, f"after untagging {i}, want the listeners and target groups of {remaining} only: {after}"
        assert after.ports() == sorted(outputs[r]["port"] for r in remaining), str(after)
    report(f"per-vpc: teardowns one by one (untag -> execution ended): {', '.join(timings)}")
    after.assert_gone()


def test_two_databases_on_one_port_get_two_listener_ports_and_another_vpc_its_own_load_balancer(
        per_vpc: dict[str, Any]) -> None:
    aws = per_vpc["aws"]
    twins_network, apart_network = (scenario.create_network(aws, name, prefix)
                                    for name, prefix in (("twins", "10.72"), ("apart", "10.73")))
    twins = wave.create_databases(aws, twins_network, "twin", 2)
    apart = wave.create_databases(aws, apart_network, "apart", 1)
    tagged = act_on_all(per_vpc, {**twins, **apart}, "provision")
    report(f"per-vpc: two databases of one VPC and one of another, tagged at once: {took(tagged)}")
    ports = {i: json.loads(e["output"]).get("port") for i, e in tagged.executions.items()}
    db_ports = {i: aws("rds").describe_db_instances(DBInstanceIdentifier=i)["DBInstances"][0]["Endpoint"]["Port"]
                for i in ports}
    in_twins, in_apart = Owned(per_vpc, twins_network, sorted(twins)), Owned(per_vpc, apart_network, sorted(apart))
    twins_parts, apart_parts = in_twins.shared_parts(), in_apart.shared_parts()
    report(f"listener ports {ports} (database ports {db_ports})")

    assert set(db_ports.values()) == {3306}, db_ports
    assert sorted(ports[i] for i in twins) == [3306, 3307] == in_twins.ports(), f"{ports}; {in_twins}"
    assert [ports[i] for i in apart] == [3306] == in_apart.ports(), f"{ports}; {in_apart}"
    for index, (kind, key) in enumerate((("load balancer", "LoadBalancerArn"), ("security group", "GroupId"),
                                         ("endpoint service", "ServiceId"), ("TiDB Cloud connection", "id"))):
        assert twins_parts[index][key] != apart_parts[index][key], f"both VPCs have {kind} {twins_parts[index][key]}"

    act_on_all(per_vpc, {**twins, **apart}, "deprovision")
    for network, dbs, parts in ((twins_network, twins, twins_parts), (apart_network, apart, apart_parts)):
        Owned(per_vpc, network, sorted(dbs), {parts[1]["GroupId"]}).assert_gone()
