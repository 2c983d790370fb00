"""Creates the stack's resources in the emulator, one CloudFormation resource type at a time,
through the same AWS APIs CloudFormation calls. The input is the CloudFormation template that SAM's
transform produced (transform.py), so nothing here knows about this project's functions, state
machines or rules: a resource added to template.yaml is deployed with no change here, and a
resource type without a deployer below stops the deploy with an error that names it.

Physical names follow ``<stack>-<LogicalId>`` (shortened with a hash where AWS limits length)
unless the template names the resource. Lambda functions get a placeholder package: their code
runs under ``cargo lambda watch`` (see lambda_forward in tests/emulator/patches).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

from . import cfn

Attributes = dict[str, Any]


@dataclass
class Function:
    logical_id: str
    name: str
    arn: str
    role_arn: str
    binary: str
    handler: str
    timeout: int
    environment: dict[str, str]
    log_format: str | None
    application_log_level: str | None
    log_group: str | None
    memory_size: int


@dataclass
class Stack:
    name: str
    functions: list[Function] = field(default_factory=list)
    state_machines: dict[str, str] = field(default_factory=dict)  # logical ID -> ARN
    outputs: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Attributes] = field(default_factory=dict)  # logical ID -> attributes
    types: dict[str, str] = field(default_factory=dict)  # logical ID -> resource type


def _placeholder_package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bootstrap", "#!/bin/sh\n# Served by `cargo lambda watch` (scripts/local-stack).\nexit 1\n")
    return buffer.getvalue()


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _policy(document: Any) -> str:
    """An IAM policy document for moto, which rejects one without a Version (SAM writes none for
    inline policies; AWS reads that as 2008-10-17, which differs from 2012-10-17 only in
    policy variables, which this template does not use)."""
    if isinstance(document, str):
        document = json.loads(document)
    return json.dumps({"Version": "2012-10-17", **document})


def _tags_list(tags: Any) -> list[dict[str, str]]:
    if isinstance(tags, dict):
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in tags or []]


def _tags_dict(tags: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in _tags_list(tags)}


def _lower_first(value: Any) -> Any:
    """CloudFormation's PascalCase property shapes -> the Step Functions API's camelCase."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_first(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_first(v) for v in value]
    return value


class Deployer:
    def __init__(self, client: Callable[[str], Any], region: str, account: str, stack_name: str,
                 template: dict[str, Any], parameters: dict[str, Any], binaries: dict[str, dict[str, Any]]):
        self.client = client
        self.region = region
        self.account = account
        self.template = template
        self.binaries = binaries
        self.stack = Stack(stack_name)
        pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        self.resolver = cfn.Resolver(template, parameters, pseudo, self.attribute)
        self.handlers: dict[str, Callable[[str, dict[str, Any]], Attributes]] = {
            "AWS::IAM::Role": self.iam_role,
            "AWS::IAM::Policy": self.iam_policy,
            "AWS::IAM::ManagedPolicy": self.iam_managed_policy,
            "AWS::Lambda::Function": self.lambda_function,
            "AWS::Lambda::Permission": self.lambda_permission,
            "AWS::Lambda::EventInvokeConfig": self.lambda_event_invoke_config,
            "AWS::StepFunctions::StateMachine": self.state_machine,
            "AWS::Events::Rule": self.events_rule,
            "AWS::Scheduler::Schedule": self.schedule,
            "AWS::SNS::Topic": self.sns_topic,
            "AWS::SNS::Subscription": self.sns_subscription,
            "AWS::SNS::TopicPolicy": self.sns_topic_policy,
            "AWS::SQS::Queue": self.sqs_queue,
            "AWS::KMS::Key": self.kms_key,
            "AWS::KMS::Alias": self.kms_alias,
            "AWS::Logs::LogGroup": self.log_group,
            "AWS::CloudWatch::Alarm": self.alarm,
            "AWS::CloudWatch::Dashboard": self.dashboard,
            "AWS::SecretsManager::Secret": self.secret,
            "AWS::DynamoDB::Table": self.dynamodb_table,
        }

    # --- driving ---

    def check_supported(self) -> None:
        missing = sorted(
            f"{logical_id} ({resource['Type']})"
            for logical_id, resource in (self.template.get("Resources") or {}).items()
            if resource["Type"] not in self.handlers
        )
        if missing:
            raise cfn.TemplateError(
                "the local stack cannot create these resources: " + ", ".join(missing)
                + ". Add a deployer for the type to scripts/local_stack/deploy.py (and the emulator, if moto lacks it)."
            )

    def deploy(self, progress: Callable[[str], None] = lambda line: None) -> Stack:
        self.check_supported()
        resources = self.template.get("Resources") or {}
        for logical_id in cfn.creation_order(self.template):
            resource = resources[logical_id]
            condition = resource.get("Condition")
            if condition and not self.resolver.condition(condition):
                continue
            kind = resource["Type"]
            props = self.resolver.resolve(resource.get("Properties") or {}, f"Resources.{logical_id}.Properties")
            try:
                attributes = self.handlers[kind](logical_id, props)
            except cfn.TemplateError:
                raise
            except Exception as error:
                raise cfn.TemplateError(f"creating {logical_id} ({kind}) failed: {error}") from error
            self.stack.resources[logical_id] = attributes
            self.stack.types[logical_id] = kind
            progress(f"{kind:34} {logical_id}")
        for name, output in (self.template.get("Outputs") or {}).items():
            condition = output.get("Condition")
            if condition and not self.resolver.condition(condition):
                continue
            self.stack.outputs[name] = self.resolver.resolve(output.get("Value"), f"Outputs.{name}")
        return self.stack

    def attribute(self, logical_id: str, name: str) -> Any:
        attributes = self.stack.resources.get(logical_id)
        if attributes is None:
            raise cfn.TemplateError(f"{logical_id} is referred to before it exists (or its Condition is false)")
        if name not in attributes:
            raise cfn.TemplateError(f"{logical_id} has no attribute {name} here (known: {', '.join(sorted(attributes))})")
        return attributes[name]

    def physical_name(self, logical_id: str, limit: int, allowed: str = r"A-Za-z0-9\-_") -> str:
        name = re.sub(f"[^{allowed}]", "-", f"{self.stack.name}-{logical_id}")
        if len(name) > limit:
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            name = f"{name[: limit - 9]}-{digest}"
        return name

    # --- IAM ---

    def iam_role(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        iam = self.client("iam")
        name = p.get("RoleName") or self.physical_name(logical_id, 64, r"A-Za-z0-9+=,.@\-_")
        kwargs: dict[str, Any] = {
            "RoleName": name,
            "Path": p.get("Path", "/"),
            "AssumeRolePolicyDocument": _json(p["AssumeRolePolicyDocument"]),
        }
        for key in ("Description", "MaxSessionDuration", "PermissionsBoundary"):
            if key in p:
                kwargs[key] = p[key]
        if p.get("Tags"):
            kwargs["Tags"] = _tags_list(p["Tags"])
        role = iam.create_role(**kwargs)["Role"]
        for policy in p.get("Policies") or []:
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=_policy(policy["PolicyDocument"]))
        for arn in p.get("ManagedPolicyArns") or []:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        return {"Ref": name, "Arn": role["Arn"], "RoleId": role["RoleId"]}

    def iam_policy(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        iam = self.client("iam")
        document = _policy(p["PolicyDocument"])
        for role in p.get("Roles") or []:
            iam.put_role_policy(RoleName=role, PolicyName=p["PolicyName"], PolicyDocument=document)
        for user in p.get("Users") or []:
            iam.put_user_policy(UserName=user, PolicyName=p["PolicyName"], PolicyDocument=document)
        for group in p.get("Groups") or []:
            iam.put_group_policy(GroupName=group, PolicyName=p["PolicyName"], PolicyDocument=document)
        return {"Ref": p["PolicyName"], "Id": p["PolicyName"]}

    def iam_managed_policy(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        iam = self.client("iam")
        name = p.get("ManagedPolicyName") or self.physical_name(logical_id, 128)
        arn = iam.create_policy(PolicyName=name, Path=p.get("Path", "/"), PolicyDocument=_policy(p["PolicyDocument"]),
                                Description=p.get("Description", ""))["Policy"]["Arn"]
        for role in p.get("Roles") or []:
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
        for user in p.get("Users") or []:
            iam.attach_user_policy(UserName=user, PolicyArn=arn)
        for group in p.get("Groups") or []:
            iam.attach_group_policy(GroupName=group, PolicyArn=arn)
        return {"Ref": arn, "PolicyArn": arn}

    # --- Lambda ---

    def lambda_function(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        meta = self.binaries.get(logical_id) or {}
        binary = meta.get("binary")
        if meta.get("build_method") != "rust-cargolambda" or not binary:
            raise cfn.TemplateError(
                f"{logical_id}: only Rust functions built by cargo lambda (Metadata BuildMethod rust-cargolambda "
                "with BuildProperties.Binary) can run locally"
            )
        name = p.get("FunctionName") or self.physical_name(logical_id, 64)
        environment = {k: str(v) for k, v in ((p.get("Environment") or {}).get("Variables") or {}).items()}
        kwargs: dict[str, Any] = {
            "FunctionName": name,
            "Runtime": p.get("Runtime", "provided.al2023"),
            "Role": p["Role"],
            "Handler": p.get("Handler", "bootstrap"),
            "Code": {"ZipFile": _placeholder_package()},
            "Timeout": int(p.get("Timeout", 3)),
            "MemorySize": int(p.get("MemorySize", 128)),
            "Environment": {"Variables": environment},
        }
        for key in ("Description", "Architectures", "TracingConfig", "LoggingConfig", "Layers", "EphemeralStorage"):
            if key in p:
                kwargs[key] = p[key]
        if p.get("Tags"):
            kwargs["Tags"] = _tags_dict(p["Tags"])
        created = self.client("lambda").create_function(**kwargs)
        logging = p.get("LoggingConfig") or {}
        self.stack.functions.append(
            Function(
                logical_id=logical_id,
                name=name,
                arn=created["FunctionArn"],
                role_arn=p["Role"],
                binary=binary,
                handler=kwargs["Handler"],
                timeout=kwargs["Timeout"],
                environment=environment,
                log_format=logging.get("LogFormat"),
                application_log_level=logging.get("ApplicationLogLevel"),
                log_group=logging.get("LogGroup") or f"/aws/lambda/{name}",
                memory_size=kwargs["MemorySize"],
            )
        )
        return {"Ref": name, "Arn": created["FunctionArn"]}

    def lambda_permission(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        kwargs = {"FunctionName": p["FunctionName"], "StatementId": logical_id, "Action": p["Action"],
                  "Principal": p["Principal"]}
        for key in ("SourceArn", "SourceAccount", "EventSourceToken", "PrincipalOrgID", "FunctionUrlAuthType"):
            if key in p:
                kwargs[key] = p[key]
        self.client("lambda").add_permission(**kwargs)
        return {"Ref": logical_id}

    def lambda_event_invoke_config(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        """PutFunctionEventInvokeConfig takes the resource's properties by the same names (the
        local functions have only $LATEST, the Qualifier SAM gives)."""
        kwargs: dict[str, Any] = {"FunctionName": p["FunctionName"]}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in p:
                kwargs[key] = int(p[key])
        if p.get("DestinationConfig"):
            kwargs["DestinationConfig"] = p["DestinationConfig"]
        self.client("lambda").put_function_event_invoke_config(**kwargs)
        return {"Ref": logical_id}

    # --- Step Functions ---

    def state_machine(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        if "DefinitionString" in p:
            definition = p["DefinitionString"]
        elif "Definition" in p:
            definition = json.dumps(p["Definition"])
        else:
            raise cfn.TemplateError(f"{logical_id}: no Definition/DefinitionString (an S3 DefinitionS3Location cannot be read locally)")
        substitutions = p.get("DefinitionSubstitutions") or {}
        used = set(re.findall(r"\$\{([^}]+)\}", definition))
        missing = sorted(used - set(substitutions))
        if missing:
            raise cfn.TemplateError(f"{logical_id}: the definition uses ${{{'}, ${'.join(missing)}}} but DefinitionSubstitutions does not define it")
        for key, value in substitutions.items():
            definition = definition.replace("${" + key + "}", str(value).lower() if isinstance(value, bool) else str(value))
        name = p.get("StateMachineName") or self.physical_name(logical_id, 80)
        kwargs: dict[str, Any] = {"name": name, "definition": definition, "roleArn": p["RoleArn"],
                                  "type": p.get("StateMachineType", "STANDARD")}
        if p.get("LoggingConfiguration"):
            kwargs["loggingConfiguration"] = _lower_first(p["LoggingConfiguration"])
        if p.get("TracingConfiguration"):
            kwargs["tracingConfiguration"] = _lower_first(p["TracingConfiguration"])
        if p.get("Tags"):
            kwargs["tags"] = [{"key": t["Key"], "value": str(t["Value"])} for t in _tags_list(p["Tags"])]
        arn = self.client("stepfunctions").create_state_machine(**kwargs)["stateMachineArn"]
        self.stack.state_machines[logical_id] = arn
        return {"Ref": arn, "Arn": arn, "Name": name, "StateMachineRevisionId": arn}

    # --- EventBridge ---

    def events_rule(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        events = self.client("events")
        name = p.get("Name") or self.physical_name(logical_id, 64, r"A-Za-z0-9.\-_")
        kwargs: dict[str, Any] = {"Name": name, "State": p.get("State", "ENABLED")}
        if "EventPattern" in p:
            kwargs["EventPattern"] = _json(p["EventPattern"])
        for key in ("ScheduleExpression", "Description", "RoleArn", "EventBusName"):
            if key in p:
                kwargs[key] = p[key]
        arn = events.put_rule(**kwargs)["RuleArn"]
        targets = []
        for target in p.get("Targets") or []:
            target = dict(target)
            if isinstance(target.get("Input"), (dict, list)):
                target["Input"] = json.dumps(target["Input"])
            targets.append(target)
        if targets:
            bus = {"EventBusName": p["EventBusName"]} if "EventBusName" in p else {}
            failed = events.put_targets(Rule=name, Targets=targets, **bus).get("FailedEntries") or []
            if failed:
                raise cfn.TemplateError(f"{logical_id}: targets rejected: {failed}")
        return {"Ref": name, "Arn": arn}

    def schedule(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        name = p.get("Name") or self.physical_name(logical_id, 64, r"A-Za-z0-9.\-_")
        kwargs: dict[str, Any] = {
            "Name": name,
            "ScheduleExpression": p["ScheduleExpression"],
            "FlexibleTimeWindow": p.get("FlexibleTimeWindow", {"Mode": "OFF"}),
            "Target": p["Target"],
        }
        for key in ("GroupName", "Description", "State", "ScheduleExpressionTimezone", "StartDate", "EndDate", "KmsKeyArn"):
            if key in p:
                kwargs[key] = p[key]
        arn = self.client("scheduler").create_schedule(**kwargs)["ScheduleArn"]
        return {"Ref": name, "Arn": arn}

    # --- SNS / SQS ---

    def sns_topic(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        sns = self.client("sns")
        name = p.get("TopicName") or self.physical_name(logical_id, 256)
        attributes = {}
        for key in ("DisplayName", "KmsMasterKeyId", "FifoTopic", "ContentBasedDeduplication", "SignatureVersion",
                    "TracingConfig", "DeliveryPolicy"):
            if key in p:
                value = p[key]
                attributes[key] = json.dumps(value) if isinstance(value, dict) else (str(value).lower() if isinstance(value, bool) else str(value))
        kwargs: dict[str, Any] = {"Name": name, "Attributes": attributes}
        if p.get("Tags"):
            kwargs["Tags"] = _tags_list(p["Tags"])
        arn = sns.create_topic(**kwargs)["TopicArn"]
        for subscription in p.get("Subscription") or []:
            sns.subscribe(TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"])
        return {"Ref": arn, "TopicArn": arn, "TopicName": name}

    def sns_subscription(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        attributes = {}
        for key in ("FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy", "DeliveryPolicy"):
            if key in p:
                value = p[key]
                attributes[key] = json.dumps(value) if isinstance(value, dict) else (str(value).lower() if isinstance(value, bool) else str(value))
        arn = self.client("sns").subscribe(TopicArn=p["TopicArn"], Protocol=p["Protocol"], Endpoint=p["Endpoint"],
                                           Attributes=attributes, ReturnSubscriptionArn=True)["SubscriptionArn"]
        return {"Ref": arn, "Arn": arn}

    def sns_topic_policy(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        for topic in p["Topics"]:
            self.client("sns").set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=_json(p["PolicyDocument"]))
        return {"Ref": logical_id}

    def sqs_queue(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        sqs = self.client("sqs")
        suffix = ".fifo" if p.get("FifoQueue") else ""
        name = p.get("QueueName") or self.physical_name(logical_id, 80 - len(suffix)) + suffix
        attributes = {k: _json(v) if isinstance(v, dict) else str(v).lower() if isinstance(v, bool) else str(v)
                      for k, v in p.items() if k not in ("QueueName", "Tags")}
        url = sqs.create_queue(QueueName=name, Attributes=attributes, tags=_tags_dict(p.get("Tags")))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}

    # --- KMS / Logs / Secrets ---

    def kms_key(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        kms = self.client("kms")
        kwargs: dict[str, Any] = {}
        if "KeyPolicy" in p:
            kwargs["Policy"] = _json(p["KeyPolicy"])
        for key in ("Description", "KeySpec", "KeyUsage", "MultiRegion"):
            if key in p:
                kwargs[key] = p[key]
        if p.get("Tags"):
            kwargs["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags_list(p["Tags"])]
        metadata = kms.create_key(**kwargs)["KeyMetadata"]
        if p.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=metadata["KeyId"])
        return {"Ref": metadata["KeyId"], "Arn": metadata["Arn"], "KeyId": metadata["KeyId"]}

    def kms_alias(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        self.client("kms").create_alias(AliasName=p["AliasName"], TargetKeyId=p["TargetKeyId"])
        return {"Ref": p["AliasName"]}

    def log_group(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        logs = self.client("logs")
        name = p.get("LogGroupName") or self.physical_name(logical_id, 512, r"A-Za-z0-9.\-_/#")
        kwargs: dict[str, Any] = {"logGroupName": name}
        if p.get("KmsKeyId"):
            kwargs["kmsKeyId"] = p["KmsKeyId"]
        if p.get("Tags"):
            kwargs["tags"] = _tags_dict(p["Tags"])
        logs.create_log_group(**kwargs)
        if p.get("RetentionInDays"):
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
        arn = f"arn:aws:logs:{self.region}:{self.account}:log-group:{name}:*"
        return {"Ref": name, "Arn": arn}

    # --- CloudWatch ---

    def alarm(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        """PutMetricAlarm takes the resource's properties by the same names (Metrics as
        MetricDataQuery structures; numbers as numbers)."""
        name = p.get("AlarmName") or self.physical_name(logical_id, 255)
        numeric = {"Period": int, "EvaluationPeriods": int, "DatapointsToAlarm": int, "Threshold": float}
        kwargs = {k: numeric[k](v) if k in numeric else v for k, v in p.items() if k != "AlarmName"}
        for query in kwargs.get("Metrics", []):
            if "Period" in query:
                query["Period"] = int(query["Period"])
            if "MetricStat" in query:
                query["MetricStat"]["Period"] = int(query["MetricStat"]["Period"])
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
        return {"Ref": name, "Arn": f"arn:aws:cloudwatch:{self.region}:{self.account}:alarm:{name}"}

    def dashboard(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        name = p.get("DashboardName") or self.physical_name(logical_id, 255)
        # CloudWatch refuses a body that is not a dashboard's JSON; so must we (moto stores any text).
        body = json.loads(p["DashboardBody"])
        if not isinstance(body.get("widgets"), list):
            raise cfn.TemplateError(f"{logical_id}: DashboardBody has no widgets list")
        self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=p["DashboardBody"])
        return {"Ref": name}

    def secret(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        name = p.get("Name") or self.physical_name(logical_id, 512, r"A-Za-z0-9/_+=.@\-")
        kwargs: dict[str, Any] = {"Name": name}
        if "SecretString" in p:
            kwargs["SecretString"] = p["SecretString"]
        elif "GenerateSecretString" in p:
            generate = p["GenerateSecretString"]
            password = self.client("secretsmanager").get_random_password(
                PasswordLength=int(generate.get("PasswordLength", 32)),
                ExcludeCharacters=generate.get("ExcludeCharacters", ""),
            )["RandomPassword"]
            template = generate.get("SecretStringTemplate")
            key = generate.get("GenerateStringKey")
            kwargs["SecretString"] = json.dumps({**json.loads(template), key: password}) if template and key else password
        for key in ("Description", "KmsKeyId"):
            if key in p:
                kwargs[key] = p[key]
        if p.get("Tags"):
            kwargs["Tags"] = _tags_list(p["Tags"])
        arn = self.client("secretsmanager").create_secret(**kwargs)["ARN"]
        return {"Ref": arn, "Id": arn}

    # --- DynamoDB ---

    def dynamodb_table(self, logical_id: str, p: dict[str, Any]) -> Attributes:
        dynamodb = self.client("dynamodb")
        name = p.get("TableName") or self.physical_name(logical_id, 255, r"A-Za-z0-9_.\-")
        kwargs: dict[str, Any] = {"TableName": name, "AttributeDefinitions": p["AttributeDefinitions"],
                                  "KeySchema": p["KeySchema"], "BillingMode": p.get("BillingMode", "PROVISIONED")}
        for key in ("ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "SSESpecification",
                    "StreamSpecification", "TableClass", "DeletionProtectionEnabled"):
            if key in p:
                kwargs[key] = p[key]
        if p.get("Tags"):
            kwargs["Tags"] = _tags_list(p["Tags"])
        table = dynamodb.create_table(**kwargs)["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": str(ttl["Enabled"]).lower() == "true"})
        return {"Ref": name, "Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn", "")}
