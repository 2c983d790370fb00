"""scripts/bench: what the product costs, one table per part (README, "Benchmarks").

  cold-start    each function (the release binary, its Handler as _HANDLER): exec -> its first
                request to a minimal Lambda Runtime API on 127.0.0.1 (init), and -> its first
                answer to an invocation against a local emulator (init + first invocation); peak
                RSS at init; medians of --runs.
                Beside them, bench/bare-lambda (lambda_runtime + aws-config + the SDK clients,
                built the same way) and bench/boto3_lambda.py (the same clients in Python/boto3).
  provisioning  one provisioning and one teardown on a local stack: AWS calls by action, Lambda
                invocations and state transitions (execution history), wall time, and wall time
                minus the waits AWS imposes (NLB, target health, acceptance).
  wave          --wave-sizes instances tagged at once, then untagged at once, under the emulator's
                API throttling with AWS's token buckets.
  build         the release binary's size (this machine's architecture); with --cold-build, the
                time of a release build from nothing (a fresh target directory).
  sam-build     (only when named) `sam build` as a user runs it, arm64, from nothing: its time and
                each function's bootstrap size.
  sharing       (only when named: `scripts/bench sharing`) SHARING_DATABASES (default 20)
                databases of one VPC tagged at once, then untagged at once, on a local stack of
                each LoadBalancerSharing mode (per-database, per-vpc; one after the other): the
                load balancers, endpoint services, TiDB Cloud connections and listeners they got,
                and the time until the last provisioning and the last teardown ended.
  faults        (only when named: `scripts/bench faults`) the fault matrix in full, every fault
                kind at every mutating call of a provisioning and a teardown
                (tests/e2e/test_fault_matrix.py with FAULT_MATRIX=full): the matrix and its totals.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests/emulator"))
from check_definitions import load_template, resources_of  # noqa: E402
from local_stack import scenario, wave  # noqa: E402

# Every function runs the one binary of functions/ (its Metadata's Binary, the same for all, as
# check_definitions.py holds); its Handler (the process's _HANDLER) names its step.
_FUNCTIONS = [f for _, f in resources_of(load_template(ROOT / "template.yaml"), "AWS::Serverless::Function")]
(BINARY,) = {f["Metadata"]["BuildProperties"]["Binary"] for f in _FUNCTIONS}
FUNCTIONS = sorted(f["Properties"]["Handler"] for f in _FUNCTIONS)
PARTS = ("cold-start", "provisioning", "wave", "build")
OPTIONAL_PARTS = ("sam-build", "sharing", "faults")  # run only when named
# What the template's Globals give every function, with values that let each one start.
FUNCTION_ENV = {"STACK_NAME": "bench", "TIDB_CLOUD_ACCOUNT_ID": "380838443567", "TIDB_CLOUD_AZ_IDS": "use1-az1,use1-az2",
                "OPT_IN_TAG_KEY": "tidb-privatelink", "CONNECTION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench",
                "TURN_TABLE_NAME": "bench-TurnTable", "RUST_LOG": "info", "AWS_LAMBDA_LOG_FORMAT": "JSON",
                "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST"}
EVENT = {"db_instance_identifier": "bench-missing-db"}
# The waits AWS imposes, as the state machines spell them.
AWS_WAITS = {"WaitForLoadBalancer", "WaitForTargetHealth", "WaitForTiDBCloud", "AwaitAcceptance"}


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n## {title}\n")
    for index, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


# --- cold start -----------------------------------------------------------------------------------


class RuntimeApi:
    """A minimal Lambda Runtime API on 127.0.0.1 for one process: hands out one event, notes when
    the process first asked for one (and its peak RSS then) and when it answered."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.answered = threading.Event()
        self.pid = 0
        self.times: dict[str, float] = {}
        self.rss_kib = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if api.asked.is_set():  # a second /next: the benchmark is over
                    api.answered.wait(30)
                    self.send_response(410)
                    self.end_headers()
                    return
                api.times["init"] = time.perf_counter()
                api.rss_kib = peak_rss_kib(api.pid)
                api.asked.set()
                body = json.dumps(EVENT).encode()
                self.send_response(200)
                for name, value in (("Lambda-Runtime-Aws-Request-Id", "bench-1"),
                                    ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000)),
                                    ("Lambda-Runtime-Invoked-Function-Arn",
                                     "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                                    ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
                                    ("Content-Type", "application/json"), ("Content-Length", str(len(body)))):
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.times.setdefault("answered", time.perf_counter())
                api.times.setdefault("outcome", "error" if self.path.endswith("/error") else "response")
                api.answered.set()
                self.send_response(202)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cold_start_once(argv: list[str], handler: str, endpoint: str) -> dict[str, Any]:
    api = RuntimeApi()
    env = {"PATH": os.environ.get("PATH", ""), **FUNCTION_ENV, "_HANDLER": handler, "AWS_ENDPOINT_URL": endpoint,
           "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server.server_port}", "AWS_LAMBDA_FUNCTION_NAME": "bench"}
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api.pid = process.pid
    try:
        deadline = time.time() + 60
        while not api.answered.wait(0.05) and process.poll() is None and time.time() < deadline:
            pass
        ok = api.answered.is_set()
    finally:
        process.kill()
        process.wait()
        api.close()
    if not ok:
        raise RuntimeError(f"{' '.join(argv)} did not answer an invocation (exit status {process.returncode})")
    return {"init_ms": (api.times["init"] - started) * 1000, "first_ms": (api.times["answered"] - started) * 1000,
            "rss_mib": api.rss_kib / 1024, "outcome": api.times["outcome"]}


def cold_start(functions: list[str], runs: int, release: Path) -> None:
    from conftest import start_emulator  # tests/emulator: an emulator of its own, on 127.0.0.1

    process, ready = start_emulator("--watch-pid", str(os.getpid()))
    endpoint = f"http://127.0.0.1:{ready['port']}"
    candidates = [(f, [str(release / BINARY)]) for f in functions]
    candidates += [("bare-lambda (baseline)", [str(release / "bare-lambda")]),
                   ("boto3 (Python)", [str(ROOT / ".venv/bin/python"), str(ROOT / "bench/boto3_lambda.py")])]
    medians: dict[str, dict[str, float]] = {}
    rows = []
    try:
        for name, argv in candidates:
            samples = [cold_start_once(argv, name, endpoint) for _ in range(runs)]
            m = {k: statistics.median(s[k] for s in samples) for k in ("init_ms", "first_ms", "rss_mib")}
            medians[name] = m
            rows.append([name, f"{m['init_ms']:.1f}", f"{m['first_ms']:.1f}", f"{m['rss_mib']:.1f}",
                         Counter(s["outcome"] for s in samples).most_common(1)[0][0]])
    finally:
        process.terminate()
        process.wait(timeout=10)
    bare, boto = medians["bare-lambda (baseline)"], medians["boto3 (Python)"]
    for row in rows:
        m = medians[row[0]]
        row += [f"{m['init_ms'] / bare['init_ms']:.2f}x", f"{m['first_ms'] / bare['first_ms']:.2f}x",
                f"{boto['init_ms'] / m['init_ms']:.0f}x", f"{boto['rss_mib'] / m['rss_mib']:.1f}x"]
    table(f"Cold start (median of {runs}; release builds; first invocation: {json.dumps(EVENT)} against an emulator)",
          ["binary", "init ms", "init + 1st invocation ms", "peak RSS at init MiB", "1st answer",
           "init vs bare", "init+1st vs bare", "boto3 init / this", "boto3 RSS / this"], rows)


# --- one provisioning and one teardown --------------------------------------------------------------


class LocalStack:
    """A local stack of its own (scripts/local-stack), stopped on exit."""

    def __init__(self, name: str, env: dict[str, str] | None = None, concurrency: int | None = None,
                 parameters: dict[str, str] | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-stack-"))
        up = subprocess.run([str(ROOT / "scripts/local-stack"), "up", "--state-dir", str(self.dir), "--port", "0",
                             "--dns-port", "0", "--stack-name", name, "--no-reload", "--owner-pid", str(os.getpid()),
                             *(["--function-concurrency", str(concurrency)] if concurrency else []),
                             *[f"--parameter={k}={v}" for k, v in (parameters or {}).items()]],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
        if up.returncode != 0:
            raise RuntimeError(f"scripts/local-stack up failed:\n{up.stdout}")
        self.state = json.loads((self.dir / "state.json").read_text())
        self.aws = scenario.clients(self.state)
        self.endpoint = self.state["endpoint"]
        double = self.state.get("tidb_cloud_double") or {}
        self.tidb_cloud = double.get("url")

    def tidb_cloud_requests(self) -> Counter[str]:
        """Every request the TiDB Cloud double has answered, by "METHOD route status"."""
        if self.tidb_cloud is None:
            return Counter()
        return Counter(wave.control.route(self.tidb_cloud, "/_double/state")[1]["answered"])

    def tidb_cloud_connections(self, services: set[str]) -> list[dict[str, Any]]:
        """The TiDB Cloud double's connections to these endpoint services (by service name)."""
        if self.tidb_cloud is None:
            return []
        state = wave.control.route(self.tidb_cloud, "/_double/state")[1]
        return [c for c in state["connections"] if c["service_name"] in services]

    def machine(self, workflow: str) -> str:
        return self.state["state_machines"]["ProvisionStateMachine" if workflow == "provision"
                                             else "DeprovisionStateMachine"]

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: Any) -> None:
        subprocess.run([str(ROOT / "scripts/local-stack"), "down", "--state-dir", str(self.dir)], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def first_run_calls(log: Path, offset: int, events: list[dict[str, Any]]) -> int:
    """The AWS calls made by the first run of each Task state (a Lambda's, with its function's role;
    an integration's, with the state machine's), the acceptance wait's left out: the calls a
    provisioning makes outside its polls (the later runs of a polled step, and the acceptor).
    A call is a run's when its role made it while the run's task was open."""
    with open(log, "rb") as f:
        f.seek(offset)
        calls = [(e["time"], e["principal"].rsplit("/", 1)[-1]) for e in map(json.loads, f.read().splitlines())
                 if e["product"] and e["check"] == 0 and not e["operation"].startswith("lambda:")]
    state, runs, seen = None, [], set()
    for event in events:
        if event["type"].endswith("StateEntered"):
            state = event["stateEnteredEventDetails"]["name"]
        elif event["type"] in ("TaskScheduled", "LambdaFunctionScheduled") and state not in seen | {"AwaitAcceptance"}:
            seen.add(state)
            details = event.get("taskScheduledEventDetails") or event["lambdaFunctionScheduledEventDetails"]
            resource = details["resource"]
            role = resource.rsplit(":", 1)[-1] + "Role" if ":function:" in resource else "StateMachineRole"
            runs.append([role, event["timestamp"].timestamp(), None])
        elif event["type"].endswith(("Succeeded", "Failed", "TimedOut")) and runs and runs[-1][2] is None:
            runs[-1][2] = event["timestamp"].timestamp()
    return sum(1 for at, role in calls for want, start, end in runs
               if role.endswith(want) and start <= at <= (end or at))


def measure(stack: LocalStack, workflow: str, identifier: str, act: Any) -> list[Any]:
    wave.throttle(stack.endpoint, None)  # clears the counts
    log = stack.dir / "logs/authorizations.jsonl"
    offset = log.stat().st_size
    tidb_cloud_before = stack.tidb_cloud_requests()
    [execution] = wave.run(stack.aws, stack.endpoint, stack.machine(workflow), [identifier], lambda _: act(),
                           poll=0.5).executions.values()
    calls = Counter(wave.counts(stack.endpoint)["product_calls"])
    calls.pop("lambda:Invoke", None)  # counted below, from the history
    tidb_cloud = stack.tidb_cloud_requests() - tidb_cloud_before
    events = wave.history(stack.aws, execution["executionArn"])
    for child in (e for e in events if e["type"] == "TaskSubmitted"
                  and "startExecution" in e["taskSubmittedEventDetails"].get("resource", "")):
        events += wave.history(stack.aws, json.loads(child["taskSubmittedEventDetails"]["output"])["ExecutionArn"])
    entered = [e for e in events if e["type"].endswith("StateEntered")]
    invocations = sum(1 for e in events if e["type"] == "LambdaFunctionScheduled"
                      or (e["type"] == "TaskScheduled" and e["taskScheduledEventDetails"]["resourceType"] == "lambda"))
    waited, opened = 0.0, {}
    for event in events:
        name = (event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {}).get("name")
        if name in AWS_WAITS:
            if event["type"].endswith("StateEntered"):
                opened[name] = event["timestamp"]
            elif name in opened:
                waited += (event["timestamp"] - opened.pop(name)).total_seconds()
    wall = (execution["stopDate"] - execution["startDate"]).total_seconds()
    polls = Counter(e["stateEnteredEventDetails"]["name"] for e in entered)
    return [workflow, execution["status"], sum(calls.values()), first_run_calls(log, offset, events),
            sum(tidb_cloud.values()),
            ", ".join(f"{r} {n}" for r, n in sorted(tidb_cloud.items())), invocations, len(entered), f"{wall:.1f}",
            f"{wall - waited:.1f}", polls["CreateLoadBalancer"] + polls["RemoveLoadBalancer"],
            polls["CheckTargetHealth"],
            ", ".join(f"{a.split(':')[1]} {n}" for a, n in sorted(calls.items(), key=lambda kv: -kv[1]))]


def provisioning() -> None:
    with LocalStack("bench-one") as stack:
        network = scenario.create_network(stack.aws, "bench", "10.61")
        # One unmeasured round first starts every function once: the local runtime takes seconds to
        # start one (cargo builds and runs it), where AWS takes milliseconds (the cold-start table).
        warm_up = scenario.create_database(stack.aws, network, "bench-warm-up")
        measure(stack, "provision", "bench-warm-up", lambda: scenario.opt_in(stack.aws, warm_up["DBInstanceArn"]))
        measure(stack, "deprovision", "bench-warm-up", lambda: wave.untag(stack.aws, warm_up["DBInstanceArn"]))
        db = scenario.create_database(stack.aws, network, "bench-db")
        rows = [measure(stack, "provision", "bench-db", lambda: scenario.opt_in(stack.aws, db["DBInstanceArn"])),
                measure(stack, "deprovision", "bench-db", lambda: wave.untag(stack.aws, db["DBInstanceArn"]))]
    table("One provisioning and one teardown (local stack, the TiDB Cloud double playing TiDB Cloud; functions warm)",
          ["workflow", "status", "AWS calls", "of them outside polls and acceptance", "TiDB Cloud requests",
           "TiDB Cloud requests by route and answer", "Lambda invocations", "state transitions", "wall s",
           "wall minus AWS's waits s", "load balancer step runs", "target health checks", "AWS calls by action"],
          rows)


# --- the wave ----------------------------------------------------------------------------------------


def waves(sizes: list[int]) -> None:
    largest = max(sizes)
    # As a team raises its quotas before tagging a fleet: one NLB per instance, and one rule per
    # instance on the databases' shared security group (defaults 50 and 60).
    quotas = {"network-load-balancers": largest + 50, "rules-per-security-group": largest + 60}
    rows, failures = [], []
    # Lambda would run an instance per invocation; locally each function gets up to 50 at once.
    env = {"EMULATOR_THROTTLING": "aws", "EMULATOR_QUOTAS": json.dumps(quotas)}
    with LocalStack("bench-wave", env, concurrency=min(largest, 50)) as stack:
        # Lambda's own waits before an asynchronous invocation's two retries (1 and 2 minutes), not
        # the seconds the tests use: under throttling, how far apart the acceptor's tries are matters.
        _, config = wave.control.route(stack.endpoint, "/moto-api/config")
        wave.control.route(stack.endpoint, "/moto-api/config", "POST",
                           {"lambda": {**config.get("lambda", {}), "async_retry_delays": [60, 120]}})
        network = scenario.create_network(stack.aws, "fleet", "10.62")
        for n in sizes:
            dbs = wave.create_databases(stack.aws, network, f"w{n}", n)
            ids = sorted(dbs)
            for verb, workflow, act in (("tag", "provision", lambda i: scenario.opt_in(stack.aws, dbs[i])),
                                        ("untag", "deprovision", lambda i: wave.untag(stack.aws, dbs[i]))):
                wave.throttle(stack.endpoint, {})  # AWS's buckets, counts cleared
                result = wave.run(stack.aws, stack.endpoint, stack.machine(workflow), ids, act)
                wave.throttle(stack.endpoint, None)
                owned = wave.owned(stack.aws, "bench-wave")
                kinds = Counter(kind for kind, i in owned.elements() if i in dbs)
                once = all(owned[(k, i)] == 1 for i in ids for k in ("target_group", "load_balancer",
                                                                     "endpoint_service", "security_group"))
                retried = sum((wave.retried_errors(wave.history(stack.aws, e["executionArn"]))
                               for e in result.executions.values()), Counter())
                if result.failed:
                    failures.append(f"N={n} {verb}: {result.failures()}")
                rows.append([n, verb, ("yes" if once else "NO") if verb == "tag" else "-", len(result.failed),
                             result.throttled(), retried.get("Throttled", 0), f"{result.seconds_to_last:.0f}",
                             f"{result.product_calls() / n:.1f}", sum(kinds.values()) if verb == "untag" else "-"])
    table("A wave: N instances tagged at once, then untagged at once, under AWS's API rate limits",
          ["N", "act", "all provisioned exactly once", "executions failed", "throttled calls (all retried if 0 failed)",
           "task attempts retried as Throttled", "s until the last ended", "AWS calls per instance",
           "resources left"], rows)
    for failure in failures:
        print(f"\nfailed executions, {failure}")


# --- a VPC's databases, with and without a shared load balancer --------------------------------------


def sharing(n: int) -> None:
    """``n`` databases of one VPC tagged at once, then untagged at once, on a local stack of each
    LoadBalancerSharing mode, one after the other (so neither slows the other down)."""
    rows, failures = [], []
    # As for the wave: the quotas a team raises before giving each of n databases its own NLB.
    quotas = {"network-load-balancers": n + 50, "rules-per-security-group": n + 60}
    for mode in ("per-database", "per-vpc"):
        with LocalStack(f"bench-{mode}", {"EMULATOR_QUOTAS": json.dumps(quotas)}, concurrency=min(max(n, 20), 50),
                        parameters={"LoadBalancerSharing": mode}) as stack:
            name, aws, cluster = stack.state["stack_name"], stack.aws, stack.state["tidb_cloud_double"]["cluster"]

            def at_once(dbs: dict[str, str], workflow: str) -> wave.Wave:
                wave.throttle(stack.endpoint, None)  # clears the counts
                return wave.at_once(aws, stack.state, dbs, workflow, cluster)

            # One unmeasured database first, in a VPC of its own, starts every function once (as in
            # the provisioning part); a wave's concurrent invocations still start more instances.
            warm_up = wave.create_databases(aws, scenario.create_network(aws, "warm-up", "10.64"), "warm-up", 1)
            for workflow in ("provision", "deprovision"):
                at_once(warm_up, workflow)
            network = scenario.create_network(aws, "shared", "10.63")
            dbs = wave.create_databases(aws, network, "db", n)
            keys = [scenario.vpc_key(network.vpc_id), *sorted(dbs)]
            tagged = at_once(dbs, "provision")
            found = scenario.inventory(aws, name, keys)
            connections = stack.tidb_cloud_connections({s["ServiceName"] for s in found["endpoint_services"]})
            untagged = at_once(dbs, "deprovision")
            left = scenario.inventory(aws, name, keys, network.security_group_id,
                                      {g["GroupId"] for g in found["security_groups"]})
            left_connections = stack.tidb_cloud_connections({s["ServiceName"] for s in found["endpoint_services"]})
        failures += [f"{mode} {verb}: {done.failures()}" for verb, done in (("tag", tagged), ("untag", untagged))
                     if done.failed]
        rows.append([mode, n, len(found["load_balancers"]), len(found["endpoint_services"]), len(connections),
                     len(found["listeners"]), len(found["target_groups"]), f"{tagged.seconds_to_last:.0f}",
                     f"{untagged.seconds_to_last:.0f}", f"{(tagged.product_calls() + untagged.product_calls()) / n:.0f}",
                     len(tagged.failed) + len(untagged.failed), left.total() + len(left_connections)])
    table(f"Sharing: {n} databases of one VPC tagged at once, then untagged at once (the TiDB Cloud double playing "
          f"TiDB Cloud; no throttling; functions warmed by one database first)",
          ["mode", "databases", "NLBs", "endpoint services", "TiDB Cloud connections", "listeners", "target groups",
           "s to provision all", "s to tear all down", "AWS calls per database", "executions failed",
           "resources left"], rows)
    for failure in failures:
        print(f"\nfailed executions, {failure}")


# --- build -------------------------------------------------------------------------------------------


def build(cold: bool) -> Path:
    """The release binary and the baseline, for this machine; with ``cold``, from a fresh target dir."""
    target = Path(tempfile.mkdtemp(prefix="bench-target-")) if cold else ROOT / "target"
    started = time.time()
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", BINARY, "-p", "bare-lambda"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": str(target)})
    seconds = time.time() - started
    release = target / "release"
    rows = [[b, f"{(release / b).stat().st_size / 2**20:.2f}"] for b in [BINARY, "bare-lambda"]]
    table(f"Build (cargo build --release: opt-level z, fat LTO, stripped; {os.cpu_count()} cores; {os.uname().machine})",
          ["binary", "size MiB"], rows)
    print(f"\n{'cold' if cold else 'incremental'} release build of the functions' binary + baseline: "
          f"{seconds:.0f} s{'' if cold else ' (run with --cold-build for the time from nothing)'}")
    return release


def sam_build() -> None:
    """`sam build` as a user runs it (arm64, samconfig.toml's options), from nothing: a fresh cargo
    target directory and build directory; its time and the size of each function's bootstrap."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-sam-build-"))
    env = {**os.environ, "CARGO_TARGET_DIR": str(scratch / "target"), "SAM_CLI_TELEMETRY": "0",
           "PATH": f"{ROOT / '.venv-tools/bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        started = time.time()
        subprocess.run([str(ROOT / ".venv-tools/bin/sam"), "build", "--beta-features", "--build-dir",
                        str(scratch / "build")], cwd=ROOT, check=True, env=env)
        seconds = time.time() - started
        # Functions with one build definition share one artifact directory, hence one file for all.
        sizes = Counter(f"{p.stat().st_size / 2**20:.2f}" for p in (scratch / "build").glob("*/bootstrap"))
    finally:  # a cold target directory is gigabytes
        shutil.rmtree(scratch, ignore_errors=True)
    table(f"sam build (arm64, cold: no cargo target or build directory; {os.cpu_count()} cores)",
          ["bootstrap size MiB", "bootstrap files built"], [[size, count] for size, count in sorted(sizes.items())])
    print(f"\nsam build from nothing: {seconds:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("named", nargs="*", metavar="PART", help="parts to run, as --parts")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS + OPTIONAL_PARTS)}")
    parser.add_argument("--functions", default=",".join(FUNCTIONS),
                        help="comma-separated functions (Handlers) to cold-start (default: all)")
    parser.add_argument("--runs", type=int, default=10, help="cold starts per binary (median)")
    parser.add_argument("--wave-sizes", default="10,100", help="comma-separated wave sizes")
    parser.add_argument("--cold-build", action="store_true", help="time the release build from a fresh target dir")
    args = parser.parse_args(argv)
    parts = args.named or args.parts.split(",")
    functions = [f for f in args.functions.split(",") if f]
    unknown = sorted(set(parts) - set(PARTS + OPTIONAL_PARTS)) + sorted(set(functions) - set(FUNCTIONS))
    if unknown:
        parser.error(f"unknown part or function: {', '.join(unknown)}")
    release = ROOT / "target/release"
    if "build" in parts or "cold-start" in parts:
        release = build(args.cold_build)
    if "sam-build" in parts:
        sam_build()
    if "cold-start" in parts:
        cold_start(functions, args.runs, release)
    if "provisioning" in parts:
        provisioning()
    if "wave" in parts:
        waves([int(n) for n in args.wave_sizes.split(",")])
    if "sharing" in parts:
        sharing(int(os.environ.get("SHARING_DATABASES", "20")))
    if "faults" in parts:
        fault_matrix()


def fault_matrix() -> None:
    """The fault matrix in full, on its own local stacks (the test prints it)."""
    print("\nFault matrix (every fault kind at every mutating call; tests/e2e/test_fault_matrix.py)", flush=True)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "tests/e2e/test_fault_matrix.py"],
                            cwd=ROOT, env={**os.environ, "FAULT_MATRIX": "full"})
    if result.returncode:
        sys.exit(f"the fault matrix did not converge everywhere (pytest exit status {result.returncode})")


if __name__ == "__main__":
    main()
