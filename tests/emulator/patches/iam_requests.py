"""What AWS authorizes for one API call: each IAM action, resource ARN and request context.

AWS checks one call as one or more *authorizations*: CreateSecurityGroup with tags is
``ec2:CreateSecurityGroup`` on the new ``security-group/*`` and on the ``vpc/<id>``, plus
``ec2:CreateTags`` on ``security-group/*`` with ``ec2:CreateAction=CreateSecurityGroup``. Each is
evaluated on its own; the call is allowed only if all are.

Resource ARNs come generically from AWS's authorization data (the resource types each action
lists, ``Evaluator.action``): a request value that is an ARN matching a type's template, or an
EC2 id of that type (``sg-``, ``vpc-``, ``vpce-svc-``...). ``BUILDERS`` covers what the data cannot
say: resources being created (named ``.../*`` as AWS names them in its denials), the extra
authorizations of tagging on create, and values found in the emulator's state (a task token's
state machine, a secret's ARN). ``EXTRA_CONTEXT`` adds the service's own condition keys. An action
that is neither wildcard-only, nor resolved generically, nor built here is ``Unmapped``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote

from .iam_evaluator import get as evaluator

# Signing names whose IAM prefix differs.
IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}

# EC2 resource types by id prefix (longest first).
EC2_ID_TYPES = (("vpce-svc-", "vpc-endpoint-service"), ("vpce-nfn-", None), ("vpce-", "vpc-endpoint"),
                ("sgr-", "security-group-rule"), ("sg-", "security-group"), ("subnet-", "subnet"),
                ("vpc-", "vpc"), ("eni-", "network-interface"))

TAG_CONTEXT_PREFIXES = {"ec2": "ec2:ResourceTag/", "elasticloadbalancing": "elasticloadbalancing:ResourceTag/",
                        "rds": "rds:db-tag/"}


class Unmapped(Exception):
    """An action the emulator cannot yet turn into authorizations: it fails closed."""


@dataclass
class Authorization:
    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict)
    resource_policy: Any = None
    # Checked against a resource AWS's data does not list (see SendTaskSuccess below).
    as_aws_behaves: bool = False


@dataclass
class Call:
    """One request as the emulator received it."""

    service: str  # IAM prefix
    operation: str  # API name, e.g. CreateSecurityGroup
    region: str
    account: str
    params: dict[str, Any]  # query: flat "A.member.1.B" -> value; JSON: the parsed body
    path: str = ""
    principal_arn: str = ""  # the role or user (not the session)
    content_type: str = ""

    @property
    def action(self) -> str:
        return f"{self.service}:{self.operation}"

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def listed(self, prefix: str) -> list[str]:
        """Values of a query list (``Prefix.1``, ``Prefix.member.1``) or a JSON list."""
        value = self.params.get(prefix)
        if isinstance(value, list):
            return [str(v) for v in value]
        pattern = re.compile(rf"^{re.escape(prefix)}\.(?:member\.)?(\d+)$")
        found = sorted((int(m.group(1)), v) for k, v in self.params.items() if (m := pattern.match(k)))
        return [str(v) for _, v in found]

    def records(self, prefix: str) -> list[dict[str, str]]:
        """A query list of structures (``Prefix.member.1.Key``) as dicts."""
        pattern = re.compile(rf"^{re.escape(prefix)}\.(?:member\.)?(\d+)\.(.+)$")
        out: dict[int, dict[str, str]] = {}
        for key, value in self.params.items():
            if m := pattern.match(key):
                out.setdefault(int(m.group(1)), {})[m.group(2)] = value
        return [out[i] for i in sorted(out)]

    def request_tags(self) -> dict[str, str]:
        """Tags the call puts on a resource (EC2 TagSpecification/Tag, ELBv2 and RDS Tags)."""
        tags: dict[str, str] = {}
        for record in self.records("TagSpecification") + self.records("TagSpecifications"):
            tags.update(_ec2_tags(record))
        for prefix in ("Tag", "Tags"):
            for record in self.records(prefix):
                if "Key" in record:
                    tags[record["Key"]] = record.get("Value", "")
        for key, value in (self.params.get("tags") or {}).items() if isinstance(self.params.get("tags"), dict) else ():
            tags[key] = value
        return tags

    def arn(self, service: str, resource: str, account: str | None = None, region: str | None = None) -> str:
        return f"arn:aws:{service}:{self.region if region is None else region}:{account or self.account}:{resource}"


def _ec2_tags(record: dict[str, str]) -> dict[str, str]:
    tags = {}
    for key, value in record.items():
        if m := re.match(r"^Tags?\.(\d+)\.Key$", key):
            tags[value] = record.get(f"{key[:-4]}.Value", "")
    return tags


# Parameters that carry tags: their values name no resource (a tag's value may well be an id).
TAG_PARAMETER = re.compile(r"(^|\.)(Tags?|TagSpecifications?|tags)(\.|$)")


def _values(value: Any) -> list[str]:
    """String values of a request's parameters, tags excepted."""
    if isinstance(value, dict):
        return [v for key, item in value.items() if not TAG_PARAMETER.search(str(key)) for v in _values(item)]
    if isinstance(value, list):
        return [v for item in value for v in _values(item)]
    return [str(value)] if isinstance(value, (str, int)) else []


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + "[^:]+".join(re.escape(p) for p in re.split(r"\$\{[^}]+\}", template)) + "$")


# --- state lookups -------------------------------------------------------------------------------


def resource_tags(arn: str) -> dict[str, str]:
    """The resource's current tags, from the emulator's state ({} if it has none or is unknown)."""
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return {}
    service, region, account, rest = parts[2], parts[3], parts[4], parts[5]
    try:
        if service == "ec2":
            from moto.ec2.models import ec2_backends

            backend = ec2_backends[account][region]
            return dict(backend.tags.get(rest.split("/")[-1], {}))
        if service == "elasticloadbalancing":
            from moto.elbv2.models import elbv2_backends

            return dict(elbv2_backends[account][region].tagging_service.get_tag_dict_for_resource(arn))
        if service == "rds":
            from moto.rds.models import rds_backends

            return {t["Key"]: t["Value"] for t in rds_backends[account][region].list_tags_for_resource(arn)}
        if service == "states":
            from moto.stepfunctions.responses import get_backend

            listed = get_backend(account, region).list_tags_for_resource(arn)
            return {t["key"]: t["value"] for t in listed.get("tags", [])}
    except Exception:  # an unknown resource has no tags; AWS then answers the call's own error
        return {}
    return {}


def _security_group_vpc(arn: str) -> str | None:
    from moto.ec2.models import ec2_backends

    parts = arn.split(":")
    group_id = arn.rsplit("/", 1)[-1]
    try:
        backend = ec2_backends[parts[4]][parts[3]]
        group = backend.get_security_group_from_id(group_id)
    except Exception:
        return None
    return f"arn:aws:ec2:{parts[3]}:{parts[4]}:vpc/{group.vpc_id}" if group is not None and group.vpc_id else None


# --- context -------------------------------------------------------------------------------------


def base_context(call: Call) -> dict[str, Any]:
    context: dict[str, Any] = {"aws:RequestedRegion": call.region, "aws:SecureTransport": "true"}
    if call.principal_arn:
        context["aws:PrincipalArn"] = call.principal_arn
        context["aws:PrincipalAccount"] = call.principal_arn.split(":")[4]
    return context


def request_tag_context(tags: dict[str, str]) -> dict[str, Any]:
    context: dict[str, Any] = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    if tags:
        context["aws:TagKeys"] = list(tags)
    return context


def existing_resource_context(arn: str) -> dict[str, Any]:
    """aws:ResourceTag/* (and the service's own alias) from the resource's tags; ec2:Vpc of a group."""
    context: dict[str, Any] = {}
    service = arn.split(":")[2] if arn.count(":") >= 5 else ""
    for key, value in resource_tags(arn).items():
        context[f"aws:ResourceTag/{key}"] = value
        if service in TAG_CONTEXT_PREFIXES:
            prefix = "rds:cluster-tag/" if ":rds:" in arn and ":cluster:" in arn else TAG_CONTEXT_PREFIXES[service]
            context[f"{prefix}{key}"] = value
    if ":security-group/" in arn:
        vpc = _security_group_vpc(arn)
        if vpc:
            context["ec2:Vpc"] = vpc
    return context


def on(call: Call, arn: str, action: str | None = None, **context: Any) -> Authorization:
    """An authorization of an existing resource (or ``*``), with the call's tags and context."""
    full = {**base_context(call), **request_tag_context(call.request_tags())}
    if arn != "*" and not arn.endswith("/*") and not arn.endswith(":*"):
        full.update(existing_resource_context(arn))
    full.update(EXTRA_CONTEXT.get(call.action, lambda c: {})(call))
    full.update(context)
    return Authorization(action or call.action, arn, full)


def tag_on_create(call: Call, arn: str) -> list[Authorization]:
    """The tagging authorization AWS makes when a create call carries tags."""
    tags = call.request_tags()
    if not tags:
        return []
    if call.service == "ec2":
        return [on(call, arn, "ec2:CreateTags", **{"ec2:CreateAction": call.operation})]
    return [on(call, arn, f"{call.service}:AddTags", **{f"{call.service}:CreateAction": call.operation})]


# --- builders ------------------------------------------------------------------------------------


def _create(resource: str) -> Callable[[Call], list[Authorization]]:
    def build(call: Call) -> list[Authorization]:
        arn = call.arn(call.service, resource.format(**{k: v for k, v in call.params.items() if isinstance(v, str)}))
        return [on(call, arn), *tag_on_create(call, arn)]
    return build


def _create_security_group(call: Call) -> list[Authorization]:
    arn = call.arn("ec2", "security-group/*")
    out = [on(call, arn)]
    if call.param("VpcId"):
        out.append(on(call, call.arn("ec2", f"vpc/{call.param('VpcId')}")))
    return out + tag_on_create(call, arn)


def _rule_changes(call: Call) -> list[Authorization]:
    """Authorize/Revoke rules: on the group whose rules change (GroupId). A group the rules name
    (UserIdGroupPairs) is not a resource of the request: the EC2 user guide's policies scope these
    actions by the changed group's tags, and rules may name groups of other accounts."""
    out = [on(call, call.arn("ec2", f"security-group/{call.param('GroupId')}"))]
    if call.request_tags():  # the new rules are resources of their own, authorized when tagged
        rule = call.arn("ec2", "security-group-rule/*")
        out += [on(call, rule), *tag_on_create(call, rule)]
    return out


def _notification_owners(call: Call) -> list[Authorization]:
    from moto.ec2.models import ec2_backends

    from .vpce_notifications import notifications

    store = notifications(ec2_backends[call.account][call.region])
    out = []
    for notification_id in call.listed("ConnectionNotificationIds") or call.listed("ConnectionNotificationId"):
        notification = store.get(notification_id)
        service_id = getattr(notification, "service_id", None)
        endpoint_id = getattr(notification, "vpc_endpoint_id", None)
        if service_id:
            out.append(on(call, call.arn("ec2", f"vpc-endpoint-service/{service_id}")))
        elif endpoint_id:
            out.append(on(call, call.arn("ec2", f"vpc-endpoint/{endpoint_id}")))
        else:  # unknown id: AWS answers it in Unsuccessful; the account's services are the scope
            out.append(on(call, call.arn("ec2", "vpc-endpoint-service/*")))
    return out


def _load_balancer(call: Call) -> list[Authorization]:
    kind = {"network": "net", "gateway": "gwy"}.get(call.param("Type", "application"), "app")
    arn = call.arn("elasticloadbalancing", f"loadbalancer/{kind}/{call.param('Name')}/*")
    return [on(call, arn), *tag_on_create(call, arn)]


def _listener(call: Call) -> list[Authorization]:
    balancer = call.param("LoadBalancerArn", "")
    listener = balancer.replace(":loadbalancer/", ":listener/", 1) + "/*"
    return [on(call, balancer), *tag_on_create(call, listener)]


def _describe_rds(parameter: str, kind: str) -> Callable[[Call], list[Authorization]]:
    """RDS Describe calls: the named resource (an identifier or its ARN), else all of its kind."""

    def build(call: Call) -> list[Authorization]:
        identifier = call.param(parameter)
        if str(identifier).startswith("arn:"):
            return [on(call, identifier)]
        return [on(call, call.arn("rds", f"{kind}:{identifier or '*'}"))]

    return build


def _invoke(call: Call) -> list[Authorization]:
    match = re.search(r"/functions/([^/]+)/invoc", call.path)
    name = unquote(match.group(1)) if match else ""
    if name.startswith("arn:"):
        return [on(call, ":".join(name.split(":")[:7]))]
    return [on(call, call.arn("lambda", f"function:{name.split(':')[0]}"))]


def _put_events(call: Call) -> list[Authorization]:
    entries = call.param("Entries") or []
    buses = sorted({str(e.get("EventBusName") or "default") for e in entries}) or ["default"]
    out = []
    for bus in buses:
        arn = bus if bus.startswith("arn:") else call.arn("events", f"event-bus/{bus}")
        mine = [e for e in entries if str(e.get("EventBusName") or "default") == bus]
        out.append(on(call, arn, **{"events:source": [e.get("Source", "") for e in mine],
                                    "events:detail-type": [e.get("DetailType", "") for e in mine]}))
    return out


def _secret(call: Call) -> list[Authorization]:
    from moto.secretsmanager.models import secretsmanager_backends

    secret_id = call.param("SecretId", "")
    policy = None
    try:
        secret = secretsmanager_backends[call.account][call.region].describe_secret(secret_id)
        arn, policy = secret.arn, getattr(secret, "policy", None)
    except Exception:  # AWS authorizes against the name it was given; the call then fails on its own
        arn = secret_id if secret_id.startswith("arn:") else call.arn("secretsmanager", f"secret:{secret_id}")
    authorization = on(call, arn)
    authorization.resource_policy = json.loads(policy) if isinstance(policy, str) and policy else None
    return [authorization]


def _task_callback(call: Call) -> list[Authorization]:
    """SendTaskSuccess/Failure/Heartbeat. AWS's data lists no resource type (so only "*" would
    match), while AWS checks the call against the state machine whose execution issued the token
    (denial messages name it; aws-cdk#8486). Evaluated as AWS behaves: against that state machine."""
    machine = _token_state_machine(call)
    if machine is None:
        return [on(call, "*")]
    authorization = on(call, machine)
    authorization.as_aws_behaves = True
    return [authorization]


def _token_state_machine(call: Call) -> str | None:
    from moto.stepfunctions.responses import get_backend

    token = call.param("taskToken")
    try:
        for machine in get_backend(call.account, call.region).state_machines:
            for execution in machine.executions:
                pool = getattr(getattr(getattr(execution, "exec_worker", None), "env", None), "callback_pool_manager", None)
                if pool is not None and pool.get(token) is not None:
                    return machine.arn
    except Exception:  # an unknown token: AWS answers InvalidToken after authorizing on "*"
        return None
    return None


def _queue(call: Call) -> list[Authorization]:
    """SQS names its queue by URL (``.../<account>/<name>``); IAM by ARN."""
    account, name = str(call.param("QueueUrl", "")).rstrip("/").split("/")[-2:]
    return [on(call, call.arn("sqs", name, account=account))]


def topic_key(topic_arn: str) -> tuple[str, dict[str, Any]] | None:
    """(ARN, policy) of the KMS key an SNS topic is encrypted with, if it is (and exists)."""
    from moto.kms.models import kms_backends
    from moto.sns.models import sns_backends

    if topic_arn.count(":") < 5:
        return None
    region, account = topic_arn.split(":")[3:5]
    key_id = getattr(sns_backends[account][region].topics.get(topic_arn), "kms_master_key_id", None)
    if not key_id:
        return None
    key = kms_backends[account][region].describe_key(key_id)
    return key.arn, json.loads(key.policy)


def _publish(call: Call) -> list[Authorization]:
    """Publishing to an encrypted topic also takes the topic's key (SNS developer guide, "Managing
    Amazon SNS encryption keys and costs": the publisher needs kms:GenerateDataKey* and
    kms:Decrypt), authorized by the key's policy."""
    topic_arn = str(call.param("TopicArn") or call.param("TargetArn") or "")
    out = [on(call, topic_arn)]
    key = topic_key(topic_arn)
    for action in ("kms:GenerateDataKey", "kms:Decrypt") if key else ():
        authorization = on(call, key[0], action=action)
        authorization.resource_policy = key[1]
        out.append(authorization)
    return out


def _table(call: Call) -> list[Authorization]:
    name = call.param("TableName", "")
    return [on(call, name if name.startswith("arn:") else call.arn("dynamodb", f"table/{name}"))]


def _service_linked_role(call: Call) -> list[Authorization]:
    service = call.param("AWSServiceName", "")
    name = {"elasticloadbalancing.amazonaws.com": "AWSServiceRoleForElasticLoadBalancing"}.get(service, "*")
    return [on(call, f"arn:aws:iam::{call.account}:role/aws-service-role/{service}/{name}")]


BUILDERS: dict[str, Callable[[Call], list[Authorization]]] = {
    "ec2:CreateSecurityGroup": _create_security_group,
    **{f"ec2:{change}SecurityGroup{direction}": _rule_changes
       for change in ("Authorize", "Revoke") for direction in ("Ingress", "Egress")},
    "ec2:CreateVpcEndpointServiceConfiguration": _create("vpc-endpoint-service/*"),
    "ec2:DeleteVpcEndpointConnectionNotifications": _notification_owners,
    "elasticloadbalancing:CreateTargetGroup": _create("targetgroup/{Name}/*"),
    "elasticloadbalancing:CreateLoadBalancer": _load_balancer,
    "elasticloadbalancing:CreateListener": _listener,
    "rds:DescribeDBInstances": _describe_rds("DBInstanceIdentifier", "db"),
    "rds:DescribeDBClusters": _describe_rds("DBClusterIdentifier", "cluster"),
    "rds:DescribeDBSubnetGroups": _describe_rds("DBSubnetGroupName", "subgrp"),
    "lambda:InvokeFunction": _invoke,
    "events:PutEvents": _put_events,
    "secretsmanager:GetSecretValue": _secret,
    "states:SendTaskSuccess": _task_callback,
    "states:SendTaskFailure": _task_callback,
    "states:SendTaskHeartbeat": _task_callback,
    "iam:CreateServiceLinkedRole": _service_linked_role,
    "cloudwatch:PutMetricData": lambda call: [on(call, "*")],
    "sns:Publish": _publish,
    **{f"dynamodb:{operation}": _table for operation in ("CreateTable", "DescribeTable", "UpdateTimeToLive",
                                                          "DescribeTimeToLive", "DeleteTable", "GetItem", "PutItem",
                                                          "UpdateItem", "DeleteItem")},
    **{f"sqs:{operation}": _queue for operation in ("SendMessage", "ReceiveMessage", "DeleteMessage",
                                                     "GetQueueAttributes", "SetQueueAttributes")},
}

EXTRA_CONTEXT: dict[str, Callable[[Call], dict[str, Any]]] = {
    "elasticloadbalancing:CreateLoadBalancer": lambda c: {
        "elasticloadbalancing:Scheme": c.param("Scheme", "internet-facing"),
        "elasticloadbalancing:SecurityGroup": c.listed("SecurityGroups"),
        "elasticloadbalancing:Subnet": c.listed("Subnets") + [m["SubnetId"] for m in c.records("SubnetMappings")
                                                              if "SubnetId" in m],
    },
    "elasticloadbalancing:CreateListener": lambda c: {"elasticloadbalancing:ListenerProtocol": [c.param("Protocol", "")]},
    "elasticloadbalancing:SetSecurityGroups": lambda c: {"elasticloadbalancing:SecurityGroup": c.listed("SecurityGroups")},
    "elasticloadbalancing:SetSubnets": lambda c: {
        "elasticloadbalancing:Subnet": c.listed("Subnets") + [m["SubnetId"] for m in c.records("SubnetMappings")
                                                              if "SubnetId" in m],
    },
    "rds:RemoveTagsFromResource": lambda c: {"aws:TagKeys": c.listed("TagKeys")},
    "elasticloadbalancing:RemoveTags": lambda c: {"aws:TagKeys": c.listed("TagKeys")},
    "iam:CreateServiceLinkedRole": lambda c: {"iam:AWSServiceName": c.param("AWSServiceName", "")},
    "cloudwatch:PutMetricData": lambda c: {"cloudwatch:namespace": c.param("Namespace", "")},
}


def generic(call: Call) -> list[Authorization]:
    """ARNs of the action's resource types found in the request (ARNs, or EC2 ids)."""
    described = evaluator().action(call.action)
    if not described.get("known"):
        raise Unmapped(f"{call.action} is not an IAM action in AWS's authorization data")
    if described.get("wildcardOnly"):
        return [on(call, "*")]
    values = _values(call.params)
    arns: list[str] = []
    for resource_type in described["resourceTypes"]:
        pattern = _template_regex(resource_type["arn"])
        arns += [v for v in values if v.startswith("arn:") and pattern.match(v)]
        if call.service == "ec2":
            for value in values:
                kind = next((kind for prefix, kind in EC2_ID_TYPES if value.startswith(prefix)), None)
                if kind == resource_type["name"]:
                    arns.append(call.arn("ec2", f"{kind}/{value}"))
    unique = list(dict.fromkeys(arns))
    if not unique:
        raise Unmapped(f"no resource of {call.action} found in the request (types: "
                       f"{', '.join(t['name'] for t in described['resourceTypes'])})")
    return [on(call, arn) for arn in unique]


# "Create" calls that add to an existing resource (found in the request) rather than make one.
ATTACHING = {"ec2:CreateTags", "ec2:CreateVpcEndpointConnectionNotification"}


def authorizations(call: Call) -> list[Authorization]:
    builder = BUILDERS.get(call.action)
    if builder is not None:
        return builder(call)
    if (call.operation.startswith("Create") and call.action not in ATTACHING
            and not evaluator().action(call.action).get("wildcardOnly")):
        raise Unmapped(f"{call.action} creates a resource: name it in iam_requests.BUILDERS")
    return generic(call)


def parse_params(content_type: str, body: str, querystring: dict[str, list[str]]) -> dict[str, Any]:
    """A request's parameters: JSON bodies parsed, query forms flattened to single values."""
    if body and ("json" in content_type or body.lstrip().startswith("{")):
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                return parsed
        except ValueError:
            pass
    return {k: (v[0] if isinstance(v, list) and v else v) for k, v in querystring.items()}
