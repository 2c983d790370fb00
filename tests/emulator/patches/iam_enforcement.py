"""IAM enforcement that checks what each caller's policies allow, action by action.

AWS evaluates every request against the caller's policies: the action, the
resource ARN and the conditions. Step Functions calls Lambda (and ``aws-sdk``
integrations) with the state machine's role; EventBridge starts executions with
the target's role.

Stock moto 5.2.5 with enforcement on (``POST /moto-api/reset-auth`` body ``0``,
or ``INITIAL_NO_AUTH_ACTION_COUNT``) checks the action, but asks about resource
``"*"`` for every service except S3/SQS/IAM/STS, so an Allow scoped to any ARN
(``arn:aws:rds:...:db:*``) never matches and least-privilege policies are
denied everything; its Step Functions interpreter calls back into moto with a
fixed key (``ak``) that is no IAM identity (``InvalidClientTokenId``); and
``ListFunctions`` fails the signature check for every caller.

Here:
  * When moto does not know the resource (it asks about ``"*"``), an Allow
    statement counts for its actions whatever its ``Resource`` says, and a Deny
    scoped to particular resources is not applied (which resource the request
    touches is unknown). So enforcement checks the *actions* of each policy.
    Not checked: resource ARNs, ``NotResource``, and conditions (moto passes
    none, so every condition holds), permissions boundaries, SCPs.
  * The Step Functions interpreter calls with credentials of the execution's
    role (assumed once per role, in the role's account), so ``lambda:InvokeFunction``
    and any ``aws-sdk:*`` task are checked against the state machine's role.
  * ``ListFunctions`` (GET ``/2015-03-31/functions/``) is signed over the path
    moto really received.
  * Query-protocol requests (EC2, RDS, ELBv2, IAM, STS, SNS: form-encoded
    POST bodies) are signature-checked over the bytes the client sent. moto
    re-encodes the parsed form instead, so a request whose client encodes
    differently from botocore (aws-sdk-rust sends a space as ``%20``) failed
    with ``AuthFailure`` / ``SignatureDoesNotMatch``.
  * AssumeRole of a role whose trust policy names only services (as every
    Lambda and Step Functions role does) is AccessDenied for users and roles,
    as on AWS (moto: HTTP 500).
  * Operations whose IAM action is named differently are checked under the IAM
    name (Lambda ``Invoke`` -> ``lambda:InvokeFunction``).
``role_allows(role_arn, action)`` evaluates a role's policies the same way, for
the EventBridge delivery patch.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult

from ._common import log, wrap

# API operations whose IAM action has another name (moto checks the operation's name).
ACTION_NAMES = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "lambda:InvokeAsync": "lambda:InvokeFunction",
    "lambda:InvokeWithResponseStream": "lambda:InvokeFunction",
}

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


def _is_specific(resource: Any) -> bool:
    if resource is None:
        return False
    values = resource if isinstance(resource, list) else [resource]
    return any(value != "*" for value in values)


def role_policies(role_arn: str) -> list[Any]:
    """The inline and attached policies of a role, as moto's evaluator takes them."""
    from moto.iam.models import iam_backends

    parts = role_arn.split(":")
    account, partition, name = parts[4], parts[1] or "aws", role_arn.split("/")[-1]
    backend = iam_backends[account][partition]
    policies: list[Any] = []
    for policy_name in backend.list_role_policies(name):
        _, document = backend.get_role_policy(name, policy_name)
        policies.append(document)
    attached, _ = backend.list_attached_role_policies(name)
    policies += attached
    return policies


def role_allows(role_arn: str, action: str) -> bool:
    try:
        policies = role_policies(role_arn)
    except Exception:
        log.warning("iam: role %s does not exist", role_arn)
        return False
    allowed = False
    for policy in policies:
        result = IAMPolicy(policy).is_action_permitted(action)
        if result == PermissionResult.DENIED:
            return False
        allowed = allowed or result == PermissionResult.PERMITTED
    return allowed


def _role_credentials(role_arn: str, region: str) -> tuple[str, str, str]:
    with _credentials_lock:
        cached = _credentials.get(role_arn)
        if cached is not None:
            return cached
        from moto.sts.models import sts_backends
        from moto.utilities.utils import get_partition

        account = role_arn.split(":")[4]
        role = sts_backends[account][get_partition(region)].assume_role(
            region_name=region,
            role_session_name="StepFunctions",
            role_arn=role_arn,
            policy="",
            duration=43200,
            external_id="",
        )
        cached = (role.access_key_id, role.secret_access_key, role.session_token)
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

    from moto.iam.access_control import IAMRequestBase

    @wrap(IAMPolicyStatement, "is_action_permitted")
    def is_action_permitted(original, self, action, resource="*", principal=None,  # type: ignore[no-untyped-def]
                            incoming_condition_values=None):
        statement = self._statement
        if resource == "*" and _is_specific(statement.get("Resource")):
            if statement.get("Effect") != "Allow":
                return PermissionResult.NEUTRAL
            self = IAMPolicyStatement({**statement, "Resource": "*"})
        return original(self, action, resource, principal, incoming_condition_values)

    from moto.stepfunctions.parser.asl.utils import boto_client

    boto_client.boto_client_for = _interpreter_client
    for name in _INTERPRETER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - a module moto dropped
            continue
        if hasattr(module, "boto_client_for"):
            module.boto_client_for = _interpreter_client

    @wrap(IAMPolicyStatement, "_check_principal")
    def _check_principal(original, self, principal):  # type: ignore[no-untyped-def]
        # A trust policy naming only services (lambda.amazonaws.com, ...): a user or role is
        # simply not a principal of it (moto raises TypeError, an HTTP 500).
        expected = self._statement.get("Principal")
        if isinstance(expected, dict) and "AWS" not in expected:
            return False
        return original(self, principal)

    @wrap(IAMRequestBase, "__init__")
    def __init__(original, self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        self._action = ACTION_NAMES.get(self._action, self._action)

    @wrap(IAMRequestBase, "_create_aws_request")
    def _create_aws_request(original, self):  # type: ignore[no-untyped-def]
        request = original(self)
        # GET requests carry no body: moto hands its parsed query string to
        # botocore as form data, which changes the payload hash of the
        # signature (Lambda ListFunctions and other REST-JSON GETs).
        if self._method in ("GET", "HEAD", "DELETE") and not self._body:
            request.data = b""
        return request
