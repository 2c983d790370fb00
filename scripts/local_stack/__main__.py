"""scripts/local-stack: the whole application on 127.0.0.1 (emulated AWS, its DNS, the real functions
under cargo lambda watch, everything template.yaml defines deployed into it).

    scripts/local-stack up [--stack-name N] [--port P] [--dns-port D] [--parameter K=V ...]
                           [--no-tidb-cloud [--tidb-cloud-account-id ID] [--tidb-cloud-az-ids a,b,c]
                            | --tidb-cloud-api-key JSON]
                           [--no-reload] [--no-build] [--function-concurrency N] [--restart] [--state-dir DIR]
    scripts/local-stack down [--state-dir DIR]
    scripts/local-stack status|env [--state-dir DIR]
    scripts/local-stack notifications [--wait S] [--state-dir DIR]

By default TiDB Cloud is played by the TiDB Cloud double (tests/tidb_cloud_double), a process of
the stack: its API key is in the local Secrets Manager and the stack is deployed with
TiDBCloudApiKeySecretArn, TiDBCloudApiUrl and TiDBCloudClusterId, so tagging a database ends with
TiDB Cloud's private link connection ACTIVE. --no-tidb-cloud deploys with TiDB Cloud's account and
zone IDs as parameters instead (no API); --tidb-cloud-api-key uses a TiDB Cloud API of your own.

`up` returns once everything answers and prints shell exports (also written to <state dir>/env):
    eval "$(scripts/local-stack env)"
Environment: LOCAL_STACK_DIR (state dir, default .local), LOCAL_STACK_NAME, LOCAL_STACK_PORT,
LOCAL_STACK_DNS_PORT; with --no-tidb-cloud, TIDB_CLOUD_ACCOUNT_ID and TIDB_CLOUD_AZ_IDS. A port of 0
picks a free one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import cfn, stack


def _state_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("LOCAL_STACK_DIR") or stack.ROOT / ".local").resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/local-stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start everything and deploy the stack (or say it is up)")
    up.add_argument("--stack-name", default=os.environ.get("LOCAL_STACK_NAME", "tidb-privatelink"))
    up.add_argument("--region", default="us-east-1")
    up.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_STACK_PORT", "5055")),
                    help="AWS API port on 127.0.0.1 (default 5055; 0: any free port)")
    up.add_argument("--dns-port", type=int, default=int(os.environ.get("LOCAL_STACK_DNS_PORT", "5053")),
                    help="DNS port (UDP and TCP) for RDS endpoint names (default 5053; 0: any free port)")
    up.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                    help="a template parameter, as `sam deploy --parameter-overrides` (repeatable)")
    who = up.add_mutually_exclusive_group()
    who.add_argument("--no-tidb-cloud", action="store_true",
                     help="no TiDB Cloud API (no double): deploy with TiDBCloudAccountId and TiDBCloudAzIds instead")
    who.add_argument("--tidb-cloud-api-key", metavar="JSON",
                     help='a TiDB Cloud key pair {"public_key": ..., "private_key": ...} for an API of your own instead '
                          f"of the double: stored as the secret {stack.TIDB_CLOUD_API_KEY_SECRET}, its ARN given as "
                          "TiDBCloudApiKeySecretArn (give TiDBCloudApiUrl and TiDBCloudClusterId with --parameter)")
    up.add_argument("--tidb-cloud-account-id",
                    help=f"with --no-tidb-cloud: TiDB Cloud's AWS account (env TIDB_CLOUD_ACCOUNT_ID; default "
                         f"{stack.LOCAL_PARAMETERS['TiDBCloudAccountId']})")
    up.add_argument("--tidb-cloud-az-ids",
                    help=f"with --no-tidb-cloud: TiDB Cloud's AZ IDs (env TIDB_CLOUD_AZ_IDS; default "
                         f"{stack.LOCAL_PARAMETERS['TiDBCloudAzIds']})")
    up.add_argument("--no-reload", action="store_true", help="do not rebuild functions when the code changes")
    up.add_argument("--function-concurrency", type=int, default=stack.DEFAULT_FUNCTION_CONCURRENCY, metavar="N",
                    help="instances of each function at once, started on demand (default %(default)s; "
                         "Lambda: up to the account's concurrency)")
    up.add_argument("--no-build", action="store_true", help="skip the up-front cargo build")
    up.add_argument("--restart", action="store_true", help="take a running stack down first")
    up.add_argument("--owner-pid", type=int, help="take the stack down when this process exits (tests)")
    up.add_argument("--template", default=os.environ.get("LOCAL_STACK_TEMPLATE", str(stack.ROOT / "template.yaml")),
                    help="the SAM template (default template.yaml; env LOCAL_STACK_TEMPLATE)")
    up.add_argument("--state-dir")
    for name, text in (("down", "stop every process the stack started"), ("status", "what is running"),
                       ("env", "print the shell exports of the running stack")):
        commands.add_parser(name, help=text).add_argument("--state-dir")
    told = commands.add_parser("notifications", help="what the stack told its notification topic since last asked")
    told.add_argument("--wait", type=float, default=0, help="wait up to S seconds for a first message")
    told.add_argument("--state-dir")
    reap = commands.add_parser("reap", help=argparse.SUPPRESS)
    reap.add_argument("--owner-pid", type=int, required=True)
    reap.add_argument("--state-dir")
    args = parser.parse_args(argv)
    state_dir = _state_dir(args.state_dir)

    try:
        if args.command == "up":
            return _up(args, state_dir)
        if args.command == "down":
            stopped = stack.down(state_dir)
            print(f"local-stack: stopped {', '.join(stopped)}" if stopped else "local-stack: nothing was running")
            return 0
        if args.command == "status":
            state, running, dead = stack.status(state_dir)
            if not running and not state:
                print("local-stack: down")
                return 3
            if state:
                print(f"stack {state['stack_name']} at {state['endpoint']} (DNS 127.0.0.1:{state['dns_port']})")
                print(f"TiDB Cloud: {stack.tidb_cloud_summary(state)}")
            for record in running:
                print(f"  running  {record['name']} (pid {record['pid']})")
            for record in dead:
                print(f"  DEAD     {record['name']} (log: {state_dir / 'logs' / (record['name'] + '.log')})")
            return 0 if state and not dead else 1
        if args.command == "env":
            state, running, dead = stack.status(state_dir)
            if not state or dead:
                print("local-stack: not up (scripts/local-stack up)", file=sys.stderr)
                return 3
            print("\n".join(stack.exports(state)))
            return 0
        if args.command == "notifications":
            state = stack.load_state(state_dir)
            if not state:
                print("local-stack: not up (scripts/local-stack up)", file=sys.stderr)
                return 3
            for message in stack.notifications(state, args.wait):
                print(f"{message['time']}  {message['subject']}\n{json.dumps(message['body'], indent=2)}")
            return 0
        if args.command == "reap":
            stack.reap(args.owner_pid, state_dir)
            return 0
    except (stack.StackError, cfn.TemplateError) as error:
        print(f"local-stack: {error}", file=sys.stderr)
        return 1
    return 2


def _up(args: argparse.Namespace, state_dir: Path) -> int:
    if args.function_concurrency < 1:
        raise stack.StackError(f"--function-concurrency must be at least 1, not {args.function_concurrency}")
    state, running, dead = stack.status(state_dir)
    if running and not args.restart:
        if state and not dead:
            print(f"local-stack: already up: stack {state['stack_name']} at {state['endpoint']} "
                  f"(`scripts/local-stack up --restart` to start afresh)", file=sys.stderr)
            print("\n".join(stack.exports(state)))
            return 0
        print("local-stack: found a partly running stack; stopping it first", file=sys.stderr)
    if running or dead or state:
        stack.down(state_dir)
    parameters: dict[str, str] = {}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep:
            raise stack.StackError(f"--parameter {item!r}: expected KEY=VALUE")
        parameters[key] = value
    if args.no_tidb_cloud:
        for key, flag, variable in (("TiDBCloudAccountId", args.tidb_cloud_account_id, "TIDB_CLOUD_ACCOUNT_ID"),
                                    ("TiDBCloudAzIds", args.tidb_cloud_az_ids, "TIDB_CLOUD_AZ_IDS")):
            if flag or os.environ.get(variable):
                parameters[key] = flag or os.environ[variable]
    elif args.tidb_cloud_account_id or args.tidb_cloud_az_ids:
        raise stack.StackError("--tidb-cloud-account-id and --tidb-cloud-az-ids go with --no-tidb-cloud "
                               "(a TiDB Cloud API tells them)")
    options = stack.Options(
        state_dir=state_dir, stack_name=args.stack_name, region=args.region, port=args.port, dns_port=args.dns_port,
        parameters=parameters, reload=not args.no_reload, build=not args.no_build, owner_pid=args.owner_pid,
        function_concurrency=args.function_concurrency,
        template=Path(args.template).resolve(), tidb_cloud_api_key=args.tidb_cloud_api_key,
        tidb_cloud="parameters" if args.no_tidb_cloud else "api" if args.tidb_cloud_api_key else "double",
    )
    started = time.time()
    state = stack.up(options)
    print(f"local-stack: up in {time.time() - started:.0f} s: stack {state['stack_name']} at {state['endpoint']}; "
          f"exports in {state_dir / 'env'}; logs in {state_dir / 'logs'}; stop with scripts/local-stack down",
          file=sys.stderr)
    print("\n".join(stack.exports(state)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
