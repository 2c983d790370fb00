#!/usr/bin/env python3
"""Start the project's local AWS: moto 5.2.5, patched, plus a DNS server.

    python tests/emulator/launch.py --port P --dns-port D [--host 127.0.0.1]
                                    [--watch-pid PID] [--config JSON]
                                    [--log-requests]

* Applies every patch in ``patches/`` (see README.md), then serves moto's
  whole API (threaded werkzeug) on http://HOST:P and RDS endpoint names by
  DNS on HOST:D (UDP, and TCP on the same port).
* Port 0 picks a free port; the ports really bound are printed as one JSON
  line on stdout once both servers listen:
  ``{"event": "ready", "port": 40123, "dns_port": 40124, "pid": 777}``.
  Readiness can also be polled with ``GET /moto-api/`` (200).
* ``MOTO_PORT`` is set to the bound HTTP port, because moto's Step Functions
  interpreter calls back into ``http://localhost:$MOTO_PORT``.
* ``--watch-pid PID``: exit soon (<= ~0.5 s) after that process is gone, so a
  test process that starts the emulator cannot leak it.
* ``--config JSON``: passed to moto's runtime config at start, like
  ``POST /moto-api/config`` (e.g. ``{"stepfunctions": {"execute_state_machine": true}}``).
* Request logging is off; ``--log-requests`` or ``EMULATOR_LOG_REQUESTS=1``
  turns werkzeug's per-request lines (stderr) on.
* ``--record-authorizations FILE``: append every IAM authorization it evaluated (principal,
  action, resource, context, decision) to FILE, one JSON line each (tests/emulator/iam/).
* Problems: an exception that escapes a handler (answered as a JSON 500, never moto's HTML
  page), any other 5xx answer, an exception logged by the emulator or raised in one of its
  threads, and a product call whose IAM action has no mapping. ``GET /_emulator/problems`` lists
  them (JSON); the test fixtures fail a run that leaves any.
* ``/_emulator/faults``, ``/_emulator/throttling`` and ``/_emulator/quotas``: fault injection, API
  throttling and account quotas (patches/faults.py, throttling.py, quotas.py).
* ``POST /_emulator/accounts`` ``{"account_id", "role_name"?}``: bootstraps an account as AWS
  Organizations does, with an administrator role (default ``OrganizationAccountAccessRole``)
  that the management account 123456789012 may assume; answers ``{"role_arn"}``.
* ``POST /_emulator/service-credentials`` ``{"role_arn", "service", "session_name"}``: credentials
  of a role as that AWS service gets them (the role's trust policy must admit the service), e.g.
  a Lambda function's.
* SIGTERM / SIGINT stop it at once (all state is in memory).
Only loopback addresses are accepted for ``--host``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="HTTP port for the AWS API (0: any free port)")
    parser.add_argument("--dns-port", type=int, required=True, help="UDP/TCP port for DNS (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--watch-pid", type=int, help="exit when this process is gone")
    parser.add_argument("--config", help="JSON for moto's runtime config (as POST /moto-api/config)")
    parser.add_argument("--record-authorizations", metavar="FILE", help="append each evaluated IAM authorization to FILE")
    parser.add_argument(
        "--log-requests",
        action="store_true",
        default=os.environ.get("EMULATOR_LOG_REQUESTS", "") not in ("", "0", "false"),
        help="log every HTTP request to stderr (also EMULATOR_LOG_REQUESTS=1)",
    )
    args = parser.parse_args(argv)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        parser.error(f"--host must be a loopback address, not {args.host!r}")
    return args


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A dead child not yet reaped still answers kill(0); it is gone for us.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _watch(pid: int) -> None:
    while _alive(pid):
        time.sleep(0.5)
    logging.getLogger("emulator").info("watched process %s is gone; exiting", pid)
    os._exit(0)


PROBLEMS: list[str] = []
_problems_lock = threading.Lock()


def problem(text: str) -> None:
    with _problems_lock:
        if len(PROBLEMS) < 200:
            PROBLEMS.append(text)


class _ProblemLog(logging.Handler):
    """An exception the emulator logged (``log.exception``, Flask's "Exception on ...")."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            problem(f"{record.name}: {record.getMessage()}\n{logging.Formatter().formatException(record.exc_info)}")


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    import traceback

    problem(f"thread {getattr(args.thread, 'name', '?')}: " + "".join(
        traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))


def _json_answer(start_response, status: str, value: object) -> list[bytes]:  # type: ignore[no-untyped-def]
    body = json.dumps(value).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _crash_answer(environ, start_response, message: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    """HTTP 500 InternalFailure in the request's protocol (EC2 XML, query XML, or JSON)."""
    from xml.sax.saxutils import escape

    if "x-www-form-urlencoded" not in (environ.get("CONTENT_TYPE") or ""):
        return _json_answer(start_response, "500 Internal Server Error", {"__type": "InternalFailure", "message": message})
    error = f"<Error><Code>InternalFailure</Code><Message>{escape(message)}</Message></Error>"
    scope = (environ.get("HTTP_AUTHORIZATION") or "").split("Credential=", 1)[-1].split("/")
    body = (f"<Response><Errors>{error}</Errors><RequestID>0</RequestID></Response>" if scope[3:4] == ["ec2"]
            else f"<ErrorResponse>{error}<RequestId>0</RequestId></ErrorResponse>").encode()
    start_response("500 Internal Server Error", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def guarded(app):  # type: ignore[no-untyped-def]
    """The WSGI app with the control routes, and every crash answered and recorded."""
    import traceback

    from patches import faults, iam_evaluation, quotas, throttling

    def control(environ, start_response):  # type: ignore[no-untyped-def]
        path = environ.get("PATH_INFO", "").rstrip("/")
        if path == "/_emulator/problems":
            return _json_answer(start_response, "200 OK", PROBLEMS + iam_evaluation.problems)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if path == "/_emulator/faults":
            return _json_answer(start_response, *faults.control(environ.get("REQUEST_METHOD", "GET"), body))
        if path == "/_emulator/throttling":
            return _json_answer(start_response, *throttling.control(environ.get("REQUEST_METHOD", "GET"), body))
        if path == "/_emulator/quotas":
            return _json_answer(start_response, *quotas.control(environ.get("REQUEST_METHOD", "GET"), body))
        if environ.get("REQUEST_METHOD") != "POST" or path not in ("/_emulator/accounts",
                                                                     "/_emulator/service-credentials"):
            return None
        request = json.loads(body or b"{}")
        if path == "/_emulator/accounts":
            try:
                role_arn = iam_evaluation.bootstrap_account(str(request["account_id"]),
                                                            request.get("role_name", "OrganizationAccountAccessRole"))
            except (KeyError, ValueError) as error:
                return _json_answer(start_response, "400 Bad Request", {"error": str(error)})
            return _json_answer(start_response, "200 OK", {"role_arn": role_arn})
        if path == "/_emulator/service-credentials":
            try:
                key, secret, token = iam_evaluation.service_credentials(
                    request["role_arn"], request["service"], request.get("session_name", "local"),
                    request.get("region", "us-east-1"), int(request.get("duration", 43200)))
            except iam_evaluation.Denied as denied:
                return _json_answer(start_response, "403 Forbidden", {"error": denied.body})
            return _json_answer(start_response, "200 OK",
                                {"AccessKeyId": key, "SecretAccessKey": secret, "SessionToken": token})
        return None

    def application(environ, start_response):  # type: ignore[no-untyped-def]
        if environ.get("PATH_INFO", "").startswith("/_emulator/"):
            answer = control(environ, start_response)
            if answer is not None:
                return answer
        what = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"

        def observe(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
            # A throttled or faulted call's 5xx is the emulator's choice (patches/throttling.py, faults.py).
            if status[:1] == "5" and not any(name.lower() == "x-emulator-injected" for name, _ in headers):
                problem(f"{what} answered {status}")
            return start_response(status, headers, exc_info)

        faults.serving(environ.get("werkzeug.socket"))
        try:
            answer = app(environ, observe)
        except Exception as error:  # a crash: answered as a service error, and recorded
            problem(f"{what} raised:\n" + "".join(traceback.format_exc().splitlines(True)[-12:]))
            return _crash_answer(environ, start_response, f"emulator error: {error!r}")
        if faults.dropped():  # a hang or applied-then-dropped fault: no answer at all
            return []
        return answer

    return application


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="emulator %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.watch_pid:
        if not _alive(args.watch_pid):
            sys.exit(f"--watch-pid {args.watch_pid}: no such process")
        threading.Thread(target=_watch, args=(args.watch_pid,), name="watch-pid", daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    from werkzeug.serving import make_server

    from moto.moto_api._internal.models import moto_api_backend
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from patches import apply_all, dns_server, iam_evaluation, iam_evaluator

    logging.getLogger().addHandler(_ProblemLog(level=logging.ERROR))
    threading.excepthook = _thread_exception
    try:
        iam_evaluator.start()
    except iam_evaluator.EvaluatorError as error:
        sys.exit(f"emulator: {error}")
    iam_evaluation.configure(args.record_authorizations)
    apply_all()
    if args.config:
        moto_api_backend.set_config(json.loads(args.config))

    log_requests = args.log_requests

    class RequestHandler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if log_requests:
                super().log_request(code, size)

    logging.getLogger("werkzeug").setLevel(logging.INFO if log_requests else logging.WARNING)

    dns_port, _dns = dns_server.start(args.host, args.dns_port)
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto_server does: errors become 500s with a body
    server = make_server(args.host, args.port, guarded(app), threaded=True, request_handler=RequestHandler)
    port = server.server_port
    # Always this server's port: a MOTO_PORT inherited from the caller would
    # send the Step Functions interpreter's calls elsewhere.
    os.environ["MOTO_PORT"] = str(port)
    print(json.dumps({"event": "ready", "port": port, "dns_port": dns_port, "pid": os.getpid()}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
