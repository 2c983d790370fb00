"""The whole application on this machine: the emulator (moto with the project's extension, and
its DNS), the stack deployed into it from template.yaml, and one ``cargo lambda watch`` per
function serving the real Rust code with that function's environment and role credentials.

State lives in a state directory (default ``.local/``): ``state.json`` (ports, PIDs' names,
ARNs, credentials), ``env`` (shell exports), ``pids/`` and ``logs/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import cfn
from .deploy import Deployer, Function
from .processes import Processes, alive, free_ports, listening, port_in_use

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/emulator"))
import control  # noqa: E402  (the emulator's control routes)
ACCOUNT = "123456789012"  # moto's default account: the stack's own account here
ADMIN_USER = "local-stack-admin"
# Local stand-ins for the parameters a real deploy is given: a fixed test "TiDB Cloud" account
# and TiDB Cloud's us-east-1 zone IDs (two of which overlap us-east-1b/c).
LOCAL_PARAMETERS = {"TiDBCloudAccountId": "380838443567", "TiDBCloudAzIds": "use1-az1,use1-az2,use1-az4"}
# With a TiDB Cloud API (the double, or --tidb-cloud-api-key) the key pair is stored under this
# secret name, as README.md's deploy steps do, and the account/AZ defaults above are not applied
# (the API tells).
TIDB_CLOUD_API_KEY_SECRET = "tidb-cloud-api-key"
# The TiDB Cloud double (tests/tidb_cloud_double), which plays TiDB Cloud by default: its API and,
# with the keys of a user in LOCAL_PARAMETERS' account, TiDB Cloud's side of PrivateLink.
TIDB_CLOUD_DOUBLE = ROOT / "tests/tidb_cloud_double/double.py"
TIDB_CLOUD_DOUBLE_CLUSTER = "1379661944646413143"  # the cluster the double knows by default
# Seconds a new connection stays CREATING in the double, as TiDB Cloud takes a while to make its
# endpoint (how long real TiDB Cloud takes is not documented: tests/tidb_cloud_double/README.md).
TIDB_CLOUD_CREATING_SECONDS = 3


class StackError(Exception):
    pass


DEFAULT_FUNCTION_CONCURRENCY = 20


@dataclass
class Options:
    state_dir: Path
    stack_name: str = "tidb-privatelink"
    region: str = "us-east-1"
    port: int = 5055
    dns_port: int = 5053
    parameters: dict[str, str] = field(default_factory=dict)
    reload: bool = True
    build: bool = True
    # Instances of each function at once (cargo lambda watch --concurrency, started on demand).
    # Lambda runs as many as there are invocations, up to the account's concurrency (1,000 by
    # default); cargo lambda watch runs one unless told, so a burst would queue and time out.
    function_concurrency: int = DEFAULT_FUNCTION_CONCURRENCY
    owner_pid: int | None = None
    template: Path = ROOT / "template.yaml"
    # Who plays TiDB Cloud: "double" (the TiDB Cloud double, a process of the stack, whose key
    # pair is stored in the local Secrets Manager), "parameters" (no API: TiDB Cloud's account and
    # zone IDs are parameters), or "api" (tidb_cloud_api_key for the API at TiDBCloudApiUrl).
    tidb_cloud: str = "double"
    # JSON {"public_key": ..., "private_key": ...} ("api"): stored in the emulator's Secrets
    # Manager before the deploy; its ARN becomes TiDBCloudApiKeySecretArn.
    tidb_cloud_api_key: str | None = None


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).upper()


def load_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "state.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def exports(state: dict[str, Any]) -> list[str]:
    lines = [
        f"export AWS_ENDPOINT_URL={state['endpoint']}",
        f"export AWS_REGION={state['region']}",
        f"export AWS_DEFAULT_REGION={state['region']}",
        f"export AWS_ACCESS_KEY_ID={state['admin']['access_key_id']}",
        f"export AWS_SECRET_ACCESS_KEY={state['admin']['secret_access_key']}",
        "unset AWS_SESSION_TOKEN AWS_PROFILE",
        f"export LOCAL_STACK_NAME={state['stack_name']}",
        f"export LOCAL_STACK_DNS=127.0.0.1:{state['dns_port']}",
        f"export TIDB_CLOUD_ACCOUNT_ID={state['tidb_cloud_account_id']}",
        # To act as TiDB Cloud's AWS account (README: playing TiDB Cloud by hand).
        f"export TIDB_CLOUD_AWS_ACCESS_KEY_ID={state['tidb_cloud']['access_key_id']}",
        f"export TIDB_CLOUD_AWS_SECRET_ACCESS_KEY={state['tidb_cloud']['secret_access_key']}",
    ]
    double = state.get("tidb_cloud_double")
    if double:
        lines += [f"export TIDB_CLOUD_API_URL={double['url']}", f"export TIDB_CLOUD_CLUSTER_ID={double['cluster']}"]
    for logical_id, arn in sorted(state["state_machines"].items()):
        lines.append(f"export {snake(logical_id)}_ARN={arn}")
    return lines


def tidb_cloud_summary(state: dict[str, Any]) -> str:
    """Who plays TiDB Cloud for this stack, in a line."""
    double, parameters = state.get("tidb_cloud_double"), state["parameters"]
    if double:
        return (f"the TiDB Cloud double at {double['url']}, cluster {double['cluster']}, "
                f"account {state['tidb_cloud_account_id']} (log: {double['log']})")
    if parameters.get("TiDBCloudApiKeySecretArn"):
        return "the API at " + parameters.get("TiDBCloudApiUrl", "the template's default TiDBCloudApiUrl")
    return f"no API: account {state['tidb_cloud_account_id']} and zone IDs given as parameters"


def _say(line: str) -> None:
    print(f"local-stack: {line}", file=sys.stderr, flush=True)


# --- pieces -------------------------------------------------------------------------------------


def transform(options: Options, parameters: dict[str, str]) -> dict[str, Any]:
    python = ROOT / ".venv-tools/bin/python"
    if not python.exists():
        raise StackError(f"{python} is missing: run scripts/setup")
    result = subprocess.run(
        [str(python), str(Path(__file__).with_name("transform.py")), str(options.template), options.region,
         ACCOUNT, options.stack_name, json.dumps(parameters)],
        capture_output=True, text=True, env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    if result.returncode != 0:
        raise StackError(f"SAM transform of {options.template} failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout)


def cargo_packages() -> dict[str, str]:
    """binary name -> package that builds it, from cargo metadata."""
    result = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"cargo metadata failed:\n{result.stderr.strip()}")
    out = {}
    for package in json.loads(result.stdout)["packages"]:
        for target in package["targets"]:
            if "bin" in target["kind"]:
                out[target["name"]] = package["name"]
    return out


# The functions resolve the emulated RDS endpoints through the stack's DNS (DNS_RESOLVER), a client
# that deployed builds leave out (Cargo.toml, feature `name-server`).
FEATURES = ["--features", "tidb-privatelink/name-server"]


def build(packages: list[str]) -> None:
    args = ["cargo", "build", *FEATURES]
    for package in sorted(set(packages)):
        args += ["-p", package]
    _say(f"building {', '.join(sorted(set(packages)))}: {' '.join(args)}")
    started = time.time()
    result = subprocess.run(args, cwd=ROOT)
    if result.returncode != 0:
        raise StackError("cargo build failed (see above)")
    _say(f"built in {time.time() - started:.0f} s")


def http(url: str, data: bytes | None = None, content_type: str = "application/json", timeout: float = 5) -> bytes:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None,
             still_running: Callable[[], bool] = lambda: True) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        if not still_running():
            break
        time.sleep(0.2)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise StackError(f"{what} did not come up" + (f"; last lines of {log}:{tail}" if log else ""))


def boto_client(endpoint: str, region: str, key: str, secret: str, token: str | None = None) -> Callable[[str], Any]:
    import boto3
    from botocore.config import Config

    session = boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
                            region_name=region)
    config = Config(retries={"max_attempts": 2, "mode": "standard"})

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint, config=config)

    return client


def _env_file_line(key: str, value: str) -> str:
    """One line of a dotenv file as cargo lambda reads it (an unquoted ``=`` in a value, as in
    session tokens, is a parse error)."""
    if "'" not in value and "\n" not in value:
        return f"{key}='{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{key}="{escaped}"'


def function_environment(function: Function, endpoint: str, region: str, dns_port: int,
                         credentials: dict[str, str]) -> dict[str, str]:
    """What Lambda gives the function's process: the template's variables, its handler, the
    region, the role's credentials, the log settings; plus where AWS and DNS are on this machine."""
    env = dict(function.environment)
    env.update({
        "_HANDLER": function.handler,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
        "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group or f"/aws/lambda/{function.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_EXECUTION_ENV": "AWS_Lambda_rapid",
        "TZ": ":UTC",
        "AWS_ENDPOINT_URL": endpoint,
        "DNS_RESOLVER": f"127.0.0.1:{dns_port}",
    })
    if function.log_format:
        env["AWS_LAMBDA_LOG_FORMAT"] = function.log_format
    if function.log_format == "JSON" and function.application_log_level:
        env["AWS_LAMBDA_LOG_LEVEL"] = function.application_log_level
    return env


def _watcher_env() -> dict[str, str]:
    """cargo lambda watch's own environment: the caller's, minus anything AWS (a developer's
    profile or keys must never reach a function), plus the tools' bin directory for zig."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("DNS_RESOLVER",)}
    env["PATH"] = f"{ROOT / '.venv-tools/bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("CARGO_TERM_COLOR", "never")
    return env


def _tidb_cloud_user(endpoint: str, region: str, account: str) -> dict[str, str]:
    """Keys of an administrator in the account that stands for TiDB Cloud's, so the double, a
    test or a curious user can act as TiDB Cloud (create the interface endpoint that requests a
    connection)."""
    role_arn = control.bootstrap_account(endpoint, account)
    bootstrap = boto_client(endpoint, region, *control.MANAGEMENT_KEY)
    assumed = bootstrap("sts").assume_role(RoleArn=role_arn, RoleSessionName="local-stack")["Credentials"]
    iam = boto_client(endpoint, region, assumed["AccessKeyId"], assumed["SecretAccessKey"], assumed["SessionToken"])("iam")
    iam.create_user(UserName="tidb-cloud")
    iam.put_user_policy(UserName="tidb-cloud", PolicyName="AdministratorAccess", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="tidb-cloud")["AccessKey"]
    return {"account": account, "access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def subscribe_notifications(client: Callable[[str], Any], stack_name: str, topic_arn: str) -> str:
    """A queue subscribed to the stack's notification topic, as a user's would be, so that
    ``scripts/local-stack notifications`` can show what the stack told; its URL."""
    sqs = client("sqs")
    url = sqs.create_queue(QueueName=f"{stack_name}-local-notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # In AWS the queue must admit the topic's deliveries.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}]})})
    client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def notifications(state: dict[str, Any], wait: float = 0) -> list[dict[str, Any]]:
    """What the stack told its notification topic since the last call: ``{"subject", "body",
    "time"}`` each, oldest first (read from the local subscriber queue, then deleted from it)."""
    sqs = boto_client(state["endpoint"], state["region"], state["admin"]["access_key_id"],
                      state["admin"]["secret_access_key"])("sqs")
    out: list[dict[str, Any]] = []
    deadline = time.time() + wait
    while True:
        messages = sqs.receive_message(QueueUrl=state["notifications_queue_url"], MaxNumberOfMessages=10,
                                       WaitTimeSeconds=1 if wait else 0).get("Messages", [])
        for message in messages:
            envelope = json.loads(message["Body"])
            out.append({"subject": envelope.get("Subject"), "body": json.loads(envelope["Message"]),
                        "time": envelope.get("Timestamp")})
            sqs.delete_message(QueueUrl=state["notifications_queue_url"], ReceiptHandle=message["ReceiptHandle"])
        if not messages and (out or time.time() >= deadline):
            return out


def deployed_policies(client: Callable[[str], Any], stack: Any) -> dict[str, Any]:
    """Every IAM policy the stack deployed, as the emulator holds it: each role's inline and
    managed policies, and the resource policies of its topic and key (tests/emulator/iam)."""
    iam = client("iam")
    roles: dict[str, Any] = {}
    resource_policies: dict[str, Any] = {}
    for logical_id, kind in stack.types.items():
        attributes = stack.resources[logical_id]
        if kind == "AWS::IAM::Role":
            name = attributes["Ref"]
            policies = [{"name": policy, "policy": iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]}
                        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]]
            for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
                document = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"]["Document"]
                policies.append({"name": attached["PolicyArn"], "policy": document, "managed": True})
            roles[logical_id] = {"arn": attributes["Arn"], "policies": policies}
        elif kind == "AWS::SNS::Topic":
            policy = json.loads(client("sns").get_topic_attributes(TopicArn=attributes["Ref"])["Attributes"].get("Policy")
                                or "null")
            # A topic without a TopicPolicy has SNS's default one (the owner account's principals),
            # which is not the template's to justify.
            if policy and [s.get("Sid") for s in policy.get("Statement", [])] == ["__default_statement_ID"]:
                policy = None
            resource_policies[logical_id] = {"arn": attributes["Ref"], "policy": policy}
        elif kind == "AWS::KMS::Key":
            policy = client("kms").get_key_policy(KeyId=attributes["KeyId"], PolicyName="default")["Policy"]
            resource_policies[logical_id] = {"arn": attributes["Arn"], "policy": json.loads(policy)}
    return {"stack_name": stack.name, "roles": roles, "resource_policies": resource_policies}


# --- TiDB Cloud API key mode (--tidb-cloud-api-key) -----------------------------------------------


def _secret_arn_placeholder(region: str) -> str:
    """A (partial) secret ARN for the checks made before the emulator runs; replaced by the
    secret's real ARN once it is stored."""
    return f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{TIDB_CLOUD_API_KEY_SECRET}"


def _admit_loopback_api_url(template: dict[str, Any], parameters: dict[str, str]) -> None:
    """template.yaml admits only https:// for TiDBCloudApiUrl (right for TiDB Cloud); the local
    TiDB Cloud double speaks plain HTTP on 127.0.0.1. Locally, and only for that exact loopback
    URL, the parameter's pattern also admits it."""
    url = parameters.get("TiDBCloudApiUrl", "")
    spec = (template.get("Parameters") or {}).get("TiDBCloudApiUrl")
    if spec and "AllowedPattern" in spec and re.fullmatch(r"http://(127\.0\.0\.1|localhost):[0-9]{1,5}/?", url):
        spec["AllowedPattern"] = f"(?:{spec['AllowedPattern']})|{re.escape(url)}"


def _start_double(processes: Processes, endpoint: str, region: str, port: int, user: dict[str, str],
                  keys: dict[str, str], owner_pid: int | None) -> dict[str, Any]:
    """The TiDB Cloud double as a process of the stack, acting in AWS with ``user``'s keys and
    accepting the key pair ``keys`` (both given in its environment, never on its command line)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "PYTHONUNBUFFERED": "1",
           "TIDB_CLOUD_AWS_ACCESS_KEY_ID": user["access_key_id"],
           "TIDB_CLOUD_AWS_SECRET_ACCESS_KEY": user["secret_access_key"],
           "TIDB_CLOUD_DOUBLE_PUBLIC_KEY": keys["public_key"], "TIDB_CLOUD_DOUBLE_PRIVATE_KEY": keys["private_key"]}
    argv = [str(ROOT / ".venv/bin/python"), str(TIDB_CLOUD_DOUBLE), "--emulator-url", endpoint, "--host", "127.0.0.1",
            "--port", str(port), "--region", region, "--account-id", user["account"],
            "--az-ids", LOCAL_PARAMETERS["TiDBCloudAzIds"], "--cluster", TIDB_CLOUD_DOUBLE_CLUSTER,
            "--creating-seconds", str(TIDB_CLOUD_CREATING_SECONDS), "--log-requests"]
    if owner_pid:
        argv += ["--watch-pid", str(owner_pid)]
    pid = processes.start("tidb-cloud-double", argv, env, ROOT)
    log = processes.log_dir / "tidb-cloud-double.log"
    wait_for("the TiDB Cloud double", lambda: listening(port), 30, log, lambda: alive(pid))
    _say(f"TiDB Cloud double on http://127.0.0.1:{port} (account {user['account']}), pid {pid}")
    return {"url": f"http://127.0.0.1:{port}", "port": port, "pid": pid, "cluster": TIDB_CLOUD_DOUBLE_CLUSTER,
            "log": str(log)}


# --- up / down ----------------------------------------------------------------------------------


def status(state_dir: Path) -> tuple[dict[str, Any] | None, list[dict], list[dict]]:
    """(state, running records, dead records)."""
    processes = Processes(state_dir)
    records = processes.records()
    running = processes.running()
    running_names = {r["name"] for r in running}
    return load_state(state_dir), running, [r for r in records if r["name"] not in running_names]


def ports_of(state: dict[str, Any]) -> list[int]:
    """Every port the stack's processes listen on."""
    double = state.get("tidb_cloud_double")
    return [state["port"], state["dns_port"], *([double["port"]] if double else []),
            *[f["port"] for f in state.get("functions", [])]]


def down(state_dir: Path, keep: tuple[int, ...] = ()) -> list[str]:
    state = load_state(state_dir)
    stopped = Processes(state_dir).stop(keep=keep)
    for name in ("state.json", "env"):
        (state_dir / name).unlink(missing_ok=True)
    shutil.rmtree(state_dir / "functions", ignore_errors=True)
    if state:
        ports = ports_of(state)
        deadline = time.time() + 5
        while time.time() < deadline and any(listening(p) for p in ports):
            time.sleep(0.1)
        busy = [p for p in ports if listening(p)]
        if busy:
            raise StackError(f"stopped {', '.join(stopped)}, but ports {busy} still answer")
    return stopped


def up(options: Options) -> dict[str, Any]:
    state_dir = options.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    double_port = free_ports(1)[0] if options.tidb_cloud == "double" else None
    double_keys = {"public_key": "local-public-key", "private_key": "local-" + secrets.token_urlsafe(18)}
    api_key = json.dumps(double_keys) if double_port else options.tidb_cloud_api_key
    if options.tidb_cloud == "api" and not api_key:
        raise StackError("a TiDB Cloud API needs its key pair (--tidb-cloud-api-key JSON)")
    defaults = LOCAL_PARAMETERS if options.tidb_cloud == "parameters" else {}
    if double_port:
        defaults = {"TiDBCloudApiUrl": f"http://127.0.0.1:{double_port}", "TiDBCloudClusterId": TIDB_CLOUD_DOUBLE_CLUSTER}
    parameters = {**defaults, **options.parameters}
    if api_key:
        parameters["TiDBCloudApiKeySecretArn"] = _secret_arn_placeholder(options.region)

    # Everything that can be checked before a process starts.
    transformed = transform(options, parameters)
    template, binaries = transformed["template"], transformed["functions"]
    _admit_loopback_api_url(template, parameters)
    values = cfn.parameter_values(template, parameters)
    Deployer(lambda s: None, options.region, ACCOUNT, options.stack_name, template, values, binaries).check_supported()
    packages = cargo_packages()
    missing = sorted(b["binary"] for b in binaries.values() if b.get("binary") not in packages)
    if missing:
        raise StackError(f"no cargo package builds the binaries {missing} named in {options.template}")
    if options.build:
        build([packages[b["binary"]] for b in binaries.values()])

    # Ports not given are the emulator's to pick (port 0): none can be taken before it binds.
    port, dns_port = options.port or 0, options.dns_port or 0
    for number, udp in ((port, False), (dns_port, False), (dns_port, True)):
        if number and port_in_use(number, udp):
            raise StackError(f"port {number} is in use on 127.0.0.1 (another local stack? `scripts/local-stack down`, "
                             "or choose --port/--dns-port)")
    function_ports = dict(zip(binaries, free_ports(len(binaries), taken=[double_port, port, dns_port])))
    processes = Processes(state_dir)

    try:
        # 1. The emulator (told where each function is served once they exist).
        config = {"stepfunctions": {"execute_state_machine": True}}
        emulator_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))},
                        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "PYTHONUNBUFFERED": "1"}
        argv = [str(ROOT / ".venv/bin/python"), str(ROOT / "tests/emulator/launch.py"), "--host", "127.0.0.1",
                "--port", str(port), "--dns-port", str(dns_port), "--config", json.dumps(config),
                "--record-authorizations", str(processes.log_dir / "authorizations.jsonl")]
        if options.owner_pid:
            argv += ["--watch-pid", str(options.owner_pid)]
        emulator_pid = processes.start("emulator", argv, emulator_env, ROOT)
        emulator_log = processes.log_dir / "emulator.log"
        ready: dict[str, Any] = {}

        def emulator_ready() -> bool:
            # launch.py prints {"event": "ready", "port": ..., "dns_port": ...} once both servers listen.
            lines = emulator_log.read_text(errors="replace").splitlines() if emulator_log.exists() else []
            ready.update(next((json.loads(line) for line in lines if line.startswith('{"event": "ready"')), {}))
            return bool(ready)

        wait_for("the emulator", emulator_ready, 60, emulator_log, lambda: alive(emulator_pid))
        port, dns_port = ready["port"], ready["dns_port"]
        endpoint = f"http://127.0.0.1:{port}"
        _say(f"emulator on {endpoint} (DNS 127.0.0.1:{dns_port}), pid {emulator_pid}")

        # 2. An administrator, as the account's owner would have; everything after uses it.
        bootstrap = boto_client(endpoint, options.region, *control.MANAGEMENT_KEY)
        iam = bootstrap("iam")
        iam.create_user(UserName=ADMIN_USER)
        iam.put_user_policy(UserName=ADMIN_USER, PolicyName="AdministratorAccess", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        admin = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
        client = boto_client(endpoint, options.region, admin["access_key_id"], admin["secret_access_key"])
        # Without the account parameter (an API tells it) the stand-in account is still created,
        # for the TiDB Cloud double to act as (it plays LOCAL_PARAMETERS' account).
        tidb_cloud = _tidb_cloud_user(endpoint, options.region,
                                      values.get("TiDBCloudAccountId") or LOCAL_PARAMETERS["TiDBCloudAccountId"])
        if api_key:
            secret = client("secretsmanager").create_secret(Name=TIDB_CLOUD_API_KEY_SECRET, SecretString=api_key)
            parameters["TiDBCloudApiKeySecretArn"] = secret["ARN"]
            values = cfn.parameter_values(template, parameters)
        double = None
        if double_port:
            double = _start_double(processes, endpoint, options.region, double_port, tidb_cloud, double_keys,
                                   options.owner_pid)

        # 3. The stack, from the transformed template.
        _say(f"deploying {options.template.name} as stack {options.stack_name}")
        deployer = Deployer(client, options.region, ACCOUNT, options.stack_name, template, values, binaries)
        stack = deployer.deploy(progress=lambda line: _say(f"  created {line}"))
        (state_dir / "policies.json").write_text(json.dumps(deployed_policies(client, stack), indent=1))
        notifications_queue_url = subscribe_notifications(client, options.stack_name,
                                                          stack.outputs["NotificationTopicArn"])

        # 4. Each function under its own cargo lambda watch, as its own role; the emulator forwards
        #    every invocation of the function to it.
        routes = {
            function.arn: {"url": f"http://127.0.0.1:{function_ports[function.logical_id]}", "name": function.binary,
                           "log": str(processes.log_dir / f"{function.name}.log")}
            for function in stack.functions
        }
        http(f"{endpoint}/moto-api/config", json.dumps({"lambda": {"use_docker": True, "forward": routes}}).encode())
        function_dir = state_dir / "functions"
        function_dir.mkdir(parents=True, exist_ok=True)
        functions_state = []
        for function in stack.functions:
            # As Lambda gets them: the role's trust policy must admit lambda.amazonaws.com.
            credentials = control.service_credentials(endpoint, function.role_arn, "lambda.amazonaws.com",
                                                      function.name, 3600)
            env = function_environment(function, endpoint, options.region, dns_port, credentials)
            env_file = function_dir / f"{function.name}.env"
            env_file.touch(mode=0o600)
            env_file.write_text("".join(_env_file_line(k, v) + "\n" for k, v in sorted(env.items())))
            function_port = function_ports[function.logical_id]
            argv = ["cargo", "lambda", "watch", "--package", packages[function.binary], "--invoke-address",
                    "127.0.0.1", "--invoke-port", str(function_port), "--env-file", str(env_file),
                    "--concurrency", str(options.function_concurrency), *FEATURES]
            if not options.reload:
                argv.append("--ignore-changes")
            pid = processes.start(function.name, [str(ROOT / ".venv-tools/bin/cargo-lambda"), *argv[1:]],
                                  _watcher_env(), ROOT)
            functions_state.append({**asdict(function), "port": function_port, "pid": pid,
                                    "package": packages[function.binary]})
        for record in functions_state:
            wait_for(f"cargo lambda watch for {record['name']}", lambda p=record["port"]: listening(p), 60,
                     processes.log_dir / f"{record['name']}.log", lambda pid=record["pid"]: alive(pid))
        _say(f"{len(functions_state)} functions served by cargo lambda watch")

        # 5. From now on every request is checked against its caller's IAM policies.
        http(f"{endpoint}/moto-api/reset-auth", b"0", content_type="text/plain")
        identity = client("sts").get_caller_identity()
        if not identity["Arn"].endswith(f":user/{ADMIN_USER}"):
            raise StackError(f"the administrator is not who the emulator sees: {identity['Arn']}")

        state = {
            "stack_name": options.stack_name,
            "region": options.region,
            "account": ACCOUNT,
            "endpoint": endpoint,
            "port": port,
            "dns_port": dns_port,
            "admin": admin,
            "parameters": parameters,
            "tidb_cloud_account_id": values.get("TiDBCloudAccountId") or tidb_cloud["account"],
            "tidb_cloud": tidb_cloud,
            "tidb_cloud_double": double,
            "notifications_queue_url": notifications_queue_url,
            "state_machines": stack.state_machines,
            "outputs": stack.outputs,
            "resources": {lid: {"type": stack.types[lid], **attrs} for lid, attrs in stack.resources.items()},
            "functions": functions_state,
            "reload": options.reload,
            "started": time.time(),
        }
        (state_dir / "state.json").write_text(json.dumps(state, indent=2, default=str))
        env_path = state_dir / "env"
        env_path.touch(mode=0o600)
        env_path.write_text("\n".join(exports(state)) + "\n")
        if options.owner_pid:
            processes.start("reaper", [sys.executable, "-m", "local_stack", "reap", "--owner-pid", str(options.owner_pid),
                                       "--state-dir", str(state_dir)],
                            {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}, ROOT)
        return state
    except BaseException:
        _say("start-up failed; stopping what was started (logs are in " + str(processes.log_dir) + ")")
        try:
            down(state_dir)
        except StackError as error:
            _say(str(error))
        raise


def reap(owner_pid: int, state_dir: Path) -> None:
    """Runs detached: once ``owner_pid`` is gone, take the stack down (a test that died must not
    leave its stack behind)."""
    while alive(owner_pid):
        time.sleep(0.5)
    try:
        down(state_dir, keep=(os.getpid(),))
    finally:
        (state_dir / "pids" / "reaper.json").unlink(missing_ok=True)
