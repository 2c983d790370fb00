"""IAM enforcement that works for every caller: signatures, and the credentials services use.

With enforcement on (``POST /moto-api/reset-auth`` body ``0``, or ``INITIAL_NO_AUTH_ACTION_COUNT``)
every request must be signed by an identity moto knows; what it may do is evaluated by
``iam_evaluation`` (actions, resources and conditions). Stock moto's Step Functions interpreter
calls back into moto with a fixed key (``ak``) that is no IAM identity (``InvalidClientTokenId``),
and ``ListFunctions`` fails the signature check for every caller.

Here:
  * The Step Functions interpreter calls with credentials of the execution's role, obtained as
    Step Functions obtains them (``service_credentials``: the role's trust policy must admit
    ``states.amazonaws.com``), so ``lambda:InvokeFunction`` and every ``aws-sdk:*`` task are
    checked against the state machine's role.
  * ``ListFunctions`` (GET ``/2015-03-31/functions/``) is signed over the path moto really received.
  * Query-protocol requests (EC2, RDS, ELBv2, IAM, STS, SNS: form-encoded POST bodies) are
    signature-checked over the bytes the client sent. moto re-encodes the parsed form instead, so
    a request whose client encodes differently from botocore (aws-sdk-rust sends a space as
    ``%20``) failed with ``AuthFailure`` / ``SignatureDoesNotMatch``.
``role_allows(role_arn, action, resource)`` evaluates a role's policies the same way, for the
EventBridge delivery patch.
"""

from __future__ import annotations

import threading
from typing import Any

from ._common import log, wrap

_credentials: dict[str, tuple[str, str, str]] = {}
_credentials_lock = threading.Lock()

# Modules of moto's Step Functions interpreter that imported boto_client_for by name.
_INTERPRETER_MODULES = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_events",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sqs",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_glue",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3",
)


def role_allows(role_arn: str, action: str, resource: str) -> bool:
    """For EventBridge targets: the role must trust events.amazonaws.com and allow the action."""
    from . import iam_evaluation

    return iam_evaluation.role_allows(role_arn, action, resource, "events.amazonaws.com")


def _role_credentials(role_arn: str, region: str) -> tuple[str, str, str]:
    with _credentials_lock:
        cached = _credentials.get(role_arn)
        if cached is None:
            from . import iam_evaluation

            cached = iam_evaluation.service_credentials(role_arn, "states.amazonaws.com", "StepFunctions", region)
            _credentials[role_arn] = cached
        return cached


def _interpreter_client(region: str, service: str, state_credentials: Any = None) -> Any:
    import boto3
    from botocore.config import Config

    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

    kwargs: dict[str, Any] = {}
    if not botocore_stubber.enabled:
        kwargs["endpoint_url"] = f"http://localhost:{moto_server_port()}"
    role_arn = getattr(state_credentials, "role_arn", None)
    key, secret, token = "ak", "sk", None
    if role_arn and role_arn.count(":") >= 5:
        try:
            key, secret, token = _role_credentials(role_arn, region)
        except Exception:  # e.g. a malformed role ARN: keep moto's own key
            log.exception("iam: cannot assume %s for the Step Functions interpreter", role_arn)
    return boto3.client(
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name=region,
        service_name=service,
        config=Config(
            parameter_validation=False,
            retries={"max_attempts": 0, "total_max_attempts": 1},
            connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
        ),
        **kwargs,
    )


RAW_BODY_KEY = "emulator.raw_body"


def _capture_body(environ: dict[str, Any]) -> None:
    """Keep the request's bytes (werkzeug hands form bodies to moto parsed, never raw)."""
    import io

    content_type = environ.get("CONTENT_TYPE", "") or ""
    if "application/x-www-form-urlencoded" not in content_type:
        return
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if length <= 0:
        return
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    environ[RAW_BODY_KEY] = body


def apply() -> None:
    import importlib

    from moto.core.responses import BaseResponse
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    @wrap(DomainDispatcherApplication, "__call__")
    def __call__(original, self, environ, start_response):  # type: ignore[no-untyped-def]
        _capture_body(environ)
        return original(self, environ, start_response)

    @wrap(BaseResponse, "setup_class")
    def setup_class(original, self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = original(self, request, *args, **kwargs)
        raw = (getattr(request, "environ", None) or {}).get(RAW_BODY_KEY)
        if raw and not self.raw_body:
            self.raw_body = raw
        return result

    from moto.stepfunctions.parser.asl.utils import boto_client

    boto_client.boto_client_for = _interpreter_client
    for name in _INTERPRETER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - a module moto dropped
            continue
        if hasattr(module, "boto_client_for"):
            module.boto_client_for = _interpreter_client

    from moto.iam.access_control import IAMRequestBase

    @wrap(IAMRequestBase, "_create_aws_request")
    def _create_aws_request(original, self):  # type: ignore[no-untyped-def]
        request = original(self)
        # GET requests carry no body: moto hands its parsed query string to
        # botocore as form data, which changes the payload hash of the
        # signature (Lambda ListFunctions and other REST-JSON GETs).
        if self._method in ("GET", "HEAD", "DELETE") and not self._body:
            request.data = b""
        return request
