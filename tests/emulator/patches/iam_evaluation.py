"""IAM evaluated as AWS evaluates it: actions, resource ARNs and conditions.

AWS authorizes every request against the caller's policies: the action, each resource the call
touches and the request's context (tags, scheme, listener protocol, ...). Stock moto checks the
action only (``Resource`` and ``Condition`` are ignored).

Here, with enforcement on, every request signed by an IAM user or an assumed role is turned into
AWS's authorizations (``iam_requests``) and each is evaluated by ``@cloud-copilot/iam-simulate``
(``iam_evaluator``) against the caller's identity policies (inline and managed) and, where the
call has one, the resource's policy (a role's trust policy for ``sts:AssumeRole``). Also, always:

  * ``sts:AssumeRole`` of a role that does not exist, or whose trust policy does not admit the
    caller, is ``AccessDenied`` (moto assumed any ARN). With enforcement off, a key the emulator
    does not know acts as the root user of its account (moto's default, or ``x-moto-account-id``).
  * PrivateLink's publishing of connection notifications (principal ``vpce.amazonaws.com``) needs
    the topic policy, and for an encrypted topic the key policy, to allow it (with
    ``aws:SourceArn``/``aws:SourceAccount`` of the endpoint service); otherwise nothing is delivered.

A call by one of the product's principals (a role that a service assumes: its trust policy names a
``Service``) whose action has no mapping fails closed: AccessDenied naming the action, and the
emulator records it as a problem. Other principals (administrators of the tests) fall back to
resource ``*``. A denial is answered as the service answers it (``DENIALS``).

``--record-authorizations FILE`` (launch.py) appends one JSON line per evaluated authorization,
for tests/emulator/iam/necessity.py; ``check`` is its place among its call's authorizations, so
the lines with ``check`` 0 are the calls themselves (scripts/bench counts them).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

from ._common import CALL_HOOKS, log, wrap
from .iam_evaluator import get as evaluator
from .iam_requests import (IAM_PREFIX, Authorization, Call, Unmapped, authorizations, base_context, parse_params,
                           topic_key)

_current = threading.local()
_record_lock = threading.Lock()
_record_path: str | None = None
# Problems the emulator found in the product's calls (an unmapped action): see launch.py.
problems: list[str] = []

# Operations whose IAM action has another name.
ACTION_NAMES = {"lambda:Invoke": "lambda:InvokeFunction", "lambda:InvokeAsync": "lambda:InvokeFunction",
                "lambda:InvokeWithResponseStream": "lambda:InvokeFunction"}


class Denied(Exception):
    """A refused call (a denial, or throttling), rendered as the service renders it: (status,
    headers, body)."""

    def __init__(self, status: int, headers: dict[str, str], body: str | bytes):
        super().__init__(body)
        self.status, self.headers, self.body = status, headers, body


def _message(caller: str, action: str, resource: str, decision: str) -> str:
    reason = ("with an explicit deny in an identity-based policy" if decision == "ExplicitlyDenied"
              else f"because no identity-based policy allows the {action} action")
    return f"User: {caller} is not authorized to perform: {action} on resource: {resource} {reason}"


def _cbor_text_map(values: dict[str, str]) -> bytes:
    """A CBOR map of text strings (RFC 8949), as the Smithy RPC v2 CBOR protocol sends errors."""
    def head(major: int, length: int) -> bytes:
        if length < 24:
            return bytes([major << 5 | length])
        for info, size in ((24, 1), (25, 2), (26, 4)):
            if length < 1 << (8 * size):
                return bytes([major << 5 | info]) + length.to_bytes(size, "big")
        raise ValueError("too long")

    out = head(5, len(values))
    for key, value in values.items():
        for text in (key.encode(), value.encode()):
            out += head(3, len(text)) + text
    return out


# Services of the query protocol (XML), and their code for a denial.
QUERY_CODES = {"ec2": "UnauthorizedOperation", "sns": "AuthorizationError", "elasticloadbalancing": "AccessDenied",
               "rds": "AccessDenied", "iam": "AccessDenied", "sts": "AccessDenied", "cloudwatch": "AccessDenied",
               "autoscaling": "AccessDenied", "sqs": "AccessDenied"}


def denial(service: str, caller: str, action: str, resource: str, decision: str, content_type: str = "") -> Denied:
    """As each service answers it (EC2 API reference "Error codes"; the services' Common Errors),
    in the protocol the client spoke: a query service's newer clients send JSON or CBOR (CloudWatch),
    and get the query error code back in that protocol (header x-amzn-query-error)."""
    message = _message(caller, action, resource, decision)
    if service == "lambda":
        return Denied(403, {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException",
                            "x-amzn-RequestId": REQUEST_ID}, json.dumps({"Type": "User", "Message": message}))
    code = QUERY_CODES.get(service)
    if service == "ec2" and not ("json" in content_type or "cbor" in content_type):
        encoded = base64.b64encode(json.dumps({"allowed": False, "action": action, "resource": resource}).encode()).decode()
        message = (f"You are not authorized to perform this operation. {message}. "
                   f"Encoded authorization failure message: {encoded}")
    return service_error(service, code or "AccessDeniedException", message, 403 if code else 400, content_type)


REQUEST_ID = "00000000-0000-0000-0000-000000000000"


def service_error(service: str, code: str, message: str, status: int, content_type: str = "") -> Denied:
    """An error as a service answers it, in the protocol the client spoke: the query services'
    XML (EC2's own shape), or JSON / CBOR (with the query code in x-amzn-query-error)."""
    ids = {"x-amzn-RequestId": REQUEST_ID}
    if service not in QUERY_CODES or "json" in content_type or "cbor" in content_type:
        headers = {**ids, **({"x-amzn-query-error": f"{code};Sender"} if service in QUERY_CODES else {})}
        if "cbor" in content_type:
            return Denied(status, {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor", **headers},
                          _cbor_text_map({"__type": code, "message": message}))
        return Denied(status, {"Content-Type": "application/x-amz-json-1.0", **headers},
                      json.dumps({"__type": code, "message": message}))
    if service == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{_xml(message)}</Message></Error></Errors><RequestID>{REQUEST_ID}</RequestID></Response>")
        return Denied(status, {"Content-Type": "text/xml"}, body)
    body = (f'<ErrorResponse xmlns="http://{service}.amazonaws.com/doc/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{_xml(message)}</Message></Error>"
            f"<RequestId>{REQUEST_ID}</RequestId></ErrorResponse>")
    return Denied(status, {"Content-Type": "text/xml", **ids}, body)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- principals ----------------------------------------------------------------------------------


def _document(policy: Any) -> dict[str, Any]:
    if hasattr(policy, "versions"):  # a managed policy
        version = next(v for v in policy.versions if v.is_default)
        document = version.document
    elif isinstance(policy, dict):
        document = policy.get("policy_document", policy)
    else:
        document = policy
    return json.loads(document) if isinstance(document, str) else document


def role_policies(backend: Any, role_name: str) -> list[dict[str, Any]]:
    """The role's identity policies, named as deployed (inline by name, managed by ARN)."""
    out = []
    for name in backend.list_role_policies(role_name):
        _, document = backend.get_role_policy(role_name, name)
        out.append({"name": name, "policy": _document(document)})
    attached, _ = backend.list_attached_role_policies(role_name)
    out += [{"name": policy.arn, "policy": _document(policy)} for policy in attached]
    return out


def is_service_role(role: Any) -> bool:
    document = _document(role.assume_role_policy_document)
    statements = document.get("Statement", [])
    return any(isinstance(s.get("Principal"), dict) and "Service" in s["Principal"]
               for s in (statements if isinstance(statements, list) else [statements]))


class Principal:
    def __init__(self, caller: str, arn: str, account: str, policies: list[dict[str, Any]], product: bool):
        self.caller, self.arn, self.account, self.policies, self.product = caller, arn, account, policies, product


def principal_of(access_key: Any) -> Principal:
    backend = access_key.backend
    if hasattr(access_key, "_owner_role_name"):
        role = backend.get_role(access_key._owner_role_name)
        return Principal(access_key.arn, role.arn, access_key.account_id,
                         role_policies(backend, role.name), is_service_role(role))
    policies = [{"name": f"policy-{i}", "policy": _document(p)} for i, p in enumerate(access_key.collect_policies())]
    return Principal(access_key.arn, access_key.arn, access_key.account_id, policies, False)


def role_principal(role_arn: str) -> Principal:
    from moto.iam.models import iam_backends

    account = role_arn.split(":")[4]
    backend = iam_backends[account]["aws"]
    role = backend.get_role_by_arn(role_arn)
    return Principal(role_arn, role_arn, account, role_policies(backend, role.name), is_service_role(role))


# --- evaluation ----------------------------------------------------------------------------------


def record(entry: dict[str, Any]) -> None:
    if _record_path is None:
        return
    with _record_lock, open(_record_path, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry, sort_keys=True) + "\n")


def evaluate(principal: Principal, authorization: Authorization, operation: str, region: str, check: int = 0) -> str:
    account = authorization.resource.split(":")[4] if authorization.resource.count(":") >= 5 else principal.account
    answer = evaluator().authorize(
        principal=principal.caller, action=authorization.action, resource=authorization.resource,
        account=account or principal.account, context=authorization.context,
        identity_policies=principal.policies, resource_policy=authorization.resource_policy,
        as_aws_behaves=authorization.as_aws_behaves,
    )
    decision = answer["decision"]
    if decision == "Error" and not principal.product and authorization.resource != "*":
        # A test's administrator: what the data cannot place is evaluated on "*".
        return evaluate(principal, Authorization(authorization.action, "*", authorization.context), operation, region,
                        check)
    if decision == "Error":
        log.error("iam: cannot evaluate %s on %s for %s: %s", authorization.action, authorization.resource,
                  principal.arn, answer.get("error"))
        problems.append(f"{operation}: {authorization.action} on {authorization.resource}: {answer.get('error')}")
    record({"time": time.time(), "principal": principal.arn, "caller": principal.caller, "product": principal.product,
            "operation": operation, "region": region, "action": authorization.action,
            "resource": authorization.resource, "account": account or principal.account,
            "context": authorization.context, "resourcePolicy": authorization.resource_policy,
            "asAwsBehaves": authorization.as_aws_behaves, "decision": decision, "check": check})
    return decision


def authorize_call(call: Call, principal: Principal) -> None:
    """Raises ``Denied`` unless every authorization of the call is allowed."""
    try:
        checks = authorizations(call)
    except Unmapped as unmapped:
        if principal.product:
            problems.append(f"{call.action} by {principal.arn}: {unmapped}")
            log.error("iam: %s by %s has no authorization mapping: %s", call.action, principal.arn, unmapped)
            raise denial(call.service, principal.caller, call.action, f"(the emulator cannot map {call.action}: "
                         f"{unmapped})", "ImplicitlyDenied", call.content_type)
        checks = [Authorization(call.action, "*", base_context(call))]
    for index, check in enumerate(checks):
        if check.action == "sts:AssumeRole":
            check.resource_policy = _trust_policy(check.resource)
        decision = evaluate(principal, check, call.action, call.region, index)
        if decision != "Allowed":
            raise denial(call.service, principal.caller, check.action, check.resource, decision, call.content_type)


def _trust_policy(role_arn: str) -> Any:
    from moto.iam.models import iam_backends

    try:
        role = iam_backends[role_arn.split(":")[4]]["aws"].get_role_by_arn(role_arn)
    except Exception:
        return None
    return _document(role.assume_role_policy_document)


def call_of(response: Any, iam_request: Any) -> Call:
    service, _, operation = iam_request._action.partition(":")
    service = IAM_PREFIX.get(service, service)
    action = ACTION_NAMES.get(f"{service}:{operation}", f"{service}:{operation}")
    service, _, operation = action.partition(":")
    body = response.body
    if isinstance(body, dict):  # moto's DynamoDB handler keeps its JSON body parsed
        body = json.dumps(body)
    elif not isinstance(body, str):
        body = (body or b"").decode("utf-8", "replace")
    content_type = (response.headers.get("Content-Type") or "") if response.headers else ""
    return Call(service=service, operation=operation, region=response.region, account=response.current_account,
                params=parse_params(content_type, body, response.querystring or {}), path=response.path or "",
                content_type=content_type)


def role_allows(role_arn: str, action: str, resource: str, service: str | None = None,
                context: dict[str, Any] | None = None) -> bool:
    """Whether a role that ``service`` uses (an EventBridge target's) may do ``action`` on
    ``resource``: the role must trust the service, and its policies allow the action."""
    try:
        principal = role_principal(role_arn)
    except Exception:
        log.warning("iam: role %s does not exist", role_arn)
        return False
    region = resource.split(":")[3] if resource.count(":") >= 5 else "us-east-1"
    if service:
        trust = Authorization("sts:AssumeRole", role_arn, {}, _trust_policy(role_arn))
        if evaluate(Principal(service, service, principal.account, [], False), trust, "sts:AssumeRole",
                    region) != "Allowed":
            log.warning("iam: role %s does not trust %s", role_arn, service)
            return False
    call = Call(service=action.split(":")[0], operation=action.split(":")[1], region=region,
                account=principal.account, params={}, principal_arn=principal.arn)
    check = Authorization(action, resource, {**base_context(call), **(context or {})})
    return evaluate(principal, check, action, region) == "Allowed"


# --- AssumeRole ----------------------------------------------------------------------------------


def _caller_of(response: Any) -> Principal:
    """Who signed the request: an IAM user or assumed role the emulator knows, else (only possible
    with enforcement off) the root user of the request's account."""
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key

    account = response.current_account
    try:
        key = create_access_key(account, "aws", response.get_access_key(), dict(response.headers))
        return principal_of(key)
    except (CreateAccessKeyFailure, KeyError, Exception):
        root = f"arn:aws:iam::{account}:root"
        return Principal(root, root, account, [{"name": "root", "policy": ALLOW_ALL}], False)


def check_assume_role(response: Any) -> None:
    from moto.iam.models import iam_backends

    role_arn = response.querystring.get("RoleArn", [""])[0]
    caller = _caller_of(response)
    parts = role_arn.split(":")
    role = None
    if len(parts) >= 6:
        try:
            role = iam_backends[parts[4]]["aws"].get_role_by_arn(role_arn)
        except Exception:
            role = None
    if role is None:
        raise denial("sts", caller.caller, "sts:AssumeRole", role_arn, "ImplicitlyDenied")
    call = Call(service="sts", operation="AssumeRole", region=response.region, account=caller.account,
                params={}, principal_arn=caller.arn)
    check = Authorization("sts:AssumeRole", role_arn, base_context(call), _document(role.assume_role_policy_document))
    decision = evaluate(caller, check, "sts:AssumeRole", response.region)
    if decision != "Allowed":
        raise denial("sts", caller.caller, "sts:AssumeRole", role_arn, decision)


def service_credentials(role_arn: str, service: str, session_name: str, region: str,
                        duration: int = 43200) -> tuple[str, str, str]:
    """Credentials of ``role_arn`` as the AWS service ``service`` (``lambda.amazonaws.com``,
    ``states.amazonaws.com``) obtains them: only if the role exists and its trust policy admits
    that service. Raises ``Denied`` otherwise."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    try:
        role = iam_backends[account]["aws"].get_role_by_arn(role_arn)
    except Exception:
        raise denial("sts", service, "sts:AssumeRole", role_arn, "ImplicitlyDenied") from None
    principal = Principal(service, service, account, [], False)
    check = Authorization("sts:AssumeRole", role_arn, {}, _document(role.assume_role_policy_document))
    decision = evaluate(principal, check, "sts:AssumeRole", region)
    if decision != "Allowed":
        raise denial("sts", service, "sts:AssumeRole", role_arn, decision)
    assumed = sts_backends[account]["aws"].assume_role(
        region_name=region, role_session_name=session_name, role_arn=role_arn, policy="",
        duration=duration, external_id="")
    return assumed.access_key_id, assumed.secret_access_key, assumed.session_token


# The account whose root the unknown key "testing" acts as with enforcement off (moto's default).
MANAGEMENT_ACCOUNT = "123456789012"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def bootstrap_account(account: str, role_name: str = "OrganizationAccountAccessRole") -> str:
    """An account made the way AWS Organizations makes a member account: with an administrator
    role that the management account (``MANAGEMENT_ACCOUNT``) may assume. Idempotent; returns the
    role's ARN."""
    from moto.iam.models import iam_backends

    if not (account.isdigit() and len(account) == 12):
        raise ValueError(f"not an AWS account id: {account!r}")
    backend = iam_backends[account]["aws"]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT_ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
    try:
        role = backend.get_role(role_name)
    except Exception:
        role = backend.create_role(role_name, json.dumps(trust), "/", None, "Administrator of the account", [], "3600")
    backend.put_role_policy(role_name, "AdministratorAccess", json.dumps(ALLOW_ALL))
    return role.arn


# --- PrivateLink's notifications -----------------------------------------------------------------


def _vpce_may_publish(topic_arn: str, service_id: str, owner: str) -> bool:
    from moto.sns.models import sns_backends

    region, account = topic_arn.split(":")[3], topic_arn.split(":")[4]
    topic = sns_backends[account][region].topics.get(topic_arn)
    if topic is None:
        return False
    service = Principal("vpce.amazonaws.com", "vpce.amazonaws.com", owner, [], False)
    context = {"aws:SourceArn": f"arn:aws:ec2:{region}:{owner}:vpc-endpoint-service/{service_id}",
               "aws:SourceAccount": owner}
    checks = [Authorization("sns:Publish", topic_arn, context, json.loads(topic.policy))]
    key = topic_key(topic_arn)
    for action in ("kms:GenerateDataKey", "kms:Decrypt") if key else ():
        checks.append(Authorization(action, key[0], context, key[1]))
    return all(evaluate(service, check, "PrivateLink notification", region) == "Allowed" for check in checks)


def apply() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.responses import BaseResponse
    from moto.iam.access_control import IAMRequestBase
    from moto.sts.responses import TokenResponse

    from . import vpce_notifications

    @wrap(BaseResponse, "call_action")
    def call_action(original, self):  # type: ignore[no-untyped-def]
        try:
            for hook in CALL_HOOKS:
                hook(self)
            return original(self)
        except Denied as denied:
            return denied.status, {**denied.headers, "status": denied.status}, denied.body

    @wrap(ActionAuthenticatorMixin, "_authenticate_and_authorize_action")
    def _authenticate(original, self, iam_request_cls, resource="*"):  # type: ignore[no-untyped-def]
        _current.response = self
        try:
            return original(self, iam_request_cls, resource)
        finally:
            _current.response = None

    @wrap(IAMRequestBase, "check_action_permitted")
    def check_action_permitted(original, self, resource):  # type: ignore[no-untyped-def]
        response = getattr(_current, "response", None)
        if self._action == "sts:GetCallerIdentity" or response is None:
            return original(self, resource)
        principal = principal_of(self._access_key)
        call = call_of(response, self)
        call.principal_arn = principal.arn
        authorize_call(call, principal)

    @wrap(TokenResponse, "assume_role")
    def assume_role(original, self):  # type: ignore[no-untyped-def]
        check_assume_role(self)
        return original(self)

    @wrap(vpce_notifications, "send")
    def send(original, messages):  # type: ignore[no-untyped-def]
        allowed = []
        for topic_arn, subject, message in messages:
            body = json.loads(message)
            if _vpce_may_publish(topic_arn, body["serviceId"], body["serviceOwner"]):
                allowed.append((topic_arn, subject, message))
            else:
                log.warning("vpce: the policies of %s do not let vpce.amazonaws.com publish for %s; not delivered",
                            topic_arn, body["serviceId"])
        return original(allowed)


def configure(record_path: str | None) -> None:
    global _record_path
    _record_path = record_path
