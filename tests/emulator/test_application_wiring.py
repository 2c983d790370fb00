"""The extension pieces the local stack stands on (lambda_forward, events_targets, rds_events,
iam_enforcement), each against a fresh emulator of its own with Step Functions executing, and a
stand-in for `cargo lambda watch` (an HTTP server that answers as it does: 200 with the result,
500 with {"errorType", "errorMessage"} for a function error)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import make_network, start_emulator

REGION = "us-east-1"
ACCOUNT = "123456789012"
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}


class FakeWatch:
    """Answers POST /2015-03-31/functions/<name>/invocations like cargo lambda watch."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                name = self.path.split("/")[-2]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
                outer.calls.append((name, body))
                if isinstance(body, dict) and body.get("sleep"):
                    time.sleep(float(body["sleep"]))
                if isinstance(body, dict) and body.get("fail"):
                    status, reply = 500, {"errorType": body["fail"], "errorMessage": f"{name} failed on purpose"}
                else:
                    status, reply = 200, {"echo": body, "function": name}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def emu() -> Iterator[dict[str, Any]]:
    process, ready = start_emulator("--watch-pid", str(os.getpid()), "--config",
                                    json.dumps({"stepfunctions": {"execute_state_machine": True}}))
    url = f"http://127.0.0.1:{ready['port']}"
    watch = FakeWatch()
    try:
        yield {"url": url, "watch": watch}
    finally:
        watch.server.shutdown()
        process.terminate()
        process.wait(timeout=10)


def client(emu: dict[str, Any], service: str, key: str = "testing", secret: str = "testing", token: str | None = None) -> Any:
    return boto3.client(service, endpoint_url=emu["url"], region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token,
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def post(emu: dict[str, Any], path: str, data: bytes, content_type: str = "application/json") -> None:
    request = urllib.request.Request(emu["url"] + path, data=data, method="POST", headers={"Content-Type": content_type})
    urllib.request.urlopen(request, timeout=10).read()


def route(emu: dict[str, Any], routes: dict[str, dict[str, Any]]) -> None:
    post(emu, "/moto-api/config", json.dumps({"lambda": {"use_docker": True, "forward": routes}}).encode())


def function(emu: dict[str, Any], name: str, timeout: int = 3, **route_extra: Any) -> str:
    iam = client(emu, "iam")
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    arn = client(emu, "lambda").create_function(
        FunctionName=name, Runtime="provided.al2023", Role=role, Handler="bootstrap", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18},
        Timeout=timeout)["FunctionArn"]
    route(emu, {arn: {"url": emu["watch"].url, "name": name.replace("fn-", "bin-"), **route_extra}})
    return arn


def state_machine(emu: dict[str, Any], name: str, definition: dict[str, Any], actions: list[str],
                  resource: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:*") -> str:
    """A state machine whose role (``<name>-role``) may do ``actions`` on ``resource``."""
    iam = client(emu, "iam")
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    if actions:
        iam.put_role_policy(RoleName=f"{name}-role", PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}))
    return client(emu, "stepfunctions").create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)["stateMachineArn"]


def run(emu: dict[str, Any], machine: str, payload: dict[str, Any]) -> dict[str, Any]:
    sfn = client(emu, "stepfunctions")
    arn = sfn.start_execution(stateMachineArn=machine, name=f"t{time.time_ns()}", input=json.dumps(payload))["executionArn"]
    for _ in range(100):
        description = sfn.describe_execution(executionArn=arn)
        if description["status"] != "RUNNING":
            return description
        time.sleep(0.1)
    raise AssertionError("execution still running")


# --- Lambda ------------------------------------------------------------------------------------


def test_invoke_runs_the_function_served_by_cargo_lambda_watch(emu: dict[str, Any]) -> None:
    function(emu, "fn-echo")
    reply = client(emu, "lambda").invoke(FunctionName="fn-echo", Payload=b'{"a": 1}')
    assert "FunctionError" not in reply
    assert json.loads(reply["Payload"].read()) == {"echo": {"a": 1}, "function": "bin-echo"}


def test_a_warm_function_gets_exactly_its_timeout(emu: dict[str, Any]) -> None:
    """Only the first invocation (process start-up) has grace; then Timeout is enforced as in AWS."""
    function(emu, "fn-slow", timeout=1)
    lam = client(emu, "lambda")
    assert "FunctionError" not in lam.invoke(FunctionName="fn-slow", Payload=b'{"sleep": 1.5}')
    started = time.time()
    reply = lam.invoke(FunctionName="fn-slow", Payload=b'{"sleep": 4}')
    elapsed = time.time() - started
    assert reply["FunctionError"] == "Unhandled"
    assert json.loads(reply["Payload"].read())["errorType"] == "Sandbox.Timedout"
    assert elapsed < 3, f"the invocation took {elapsed:.1f} s of a 1 s timeout"


def test_a_function_error_comes_back_as_lambda_reports_it(emu: dict[str, Any]) -> None:
    function(emu, "fn-fail")
    reply = client(emu, "lambda").invoke(FunctionName="fn-fail", Payload=b'{"fail": "DatabaseNotFound"}')
    assert reply["StatusCode"] == 200 and reply["FunctionError"] == "Unhandled"
    assert json.loads(reply["Payload"].read())["errorType"] == "DatabaseNotFound"


def test_a_function_that_exits_fails_at_once_with_its_log(emu: dict[str, Any], tmp_path: Any) -> None:
    log = tmp_path / "watch.log"
    log.write_text("")
    iam = client(emu, "iam")
    role = iam.create_role(RoleName="fn-exit-role", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    arn = client(emu, "lambda").create_function(FunctionName="fn-exit", Runtime="provided.al2023", Role=role,
                                                Handler="bootstrap", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})["FunctionArn"]
    silent = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (BaseHTTPRequestHandler,), {
        "do_POST": lambda self: time.sleep(30), "log_message": lambda self, *a: None}))
    threading.Thread(target=silent.serve_forever, daemon=True).start()
    route(emu, {arn: {"url": f"http://127.0.0.1:{silent.server_address[1]}", "name": "bin-exit", "log": str(log)}})
    threading.Timer(1.0, lambda: log.write_text("error[E0425]: cannot find value `x`\nERROR command exited code=101\n")).start()
    started = time.time()
    reply = client(emu, "lambda").invoke(FunctionName="fn-exit", Payload=b"{}")
    assert time.time() - started < 10
    payload = json.loads(reply["Payload"].read())
    assert (reply["FunctionError"], payload["errorType"]) == ("Unhandled", "Runtime.ExitError")
    assert "E0425" in payload["errorMessage"]
    silent.shutdown()


def test_step_functions_retry_and_catch_see_the_functions_error_name(emu: dict[str, Any]) -> None:
    arn = function(emu, "fn-step")
    definition = {"StartAt": "Step", "States": {
        "Step": {"Type": "Task", "Resource": arn, "Catch": [{"ErrorEquals": ["Recoverable"], "Next": "Caught"}], "End": True},
        "Caught": {"Type": "Pass", "End": True}}}
    machine = state_machine(emu, "sm-step", definition, ["lambda:InvokeFunction"])
    assert run(emu, machine, {"x": 1})["status"] == "SUCCEEDED"
    assert run(emu, machine, {"fail": "Recoverable"})["status"] == "SUCCEEDED"
    failed = run(emu, machine, {"fail": "UnsupportedEngine"})
    assert (failed["status"], failed["error"]) == ("FAILED", "UnsupportedEngine")


@contextlib.contextmanager
def faults(emu: dict[str, Any], *specs: dict[str, Any]) -> Iterator[None]:
    post(emu, "/_emulator/faults", json.dumps({"faults": list(specs)}).encode())
    try:
        yield
    finally:
        urllib.request.urlopen(urllib.request.Request(emu["url"] + "/_emulator/faults", method="DELETE"),
                               timeout=10).read()


def calls_of(emu: dict[str, Any], binary: str, count: int) -> list[Any]:
    """The payloads ``binary`` received, once it has received ``count`` (or after 5 s)."""
    for _ in range(50):
        bodies = [body for name, body in emu["watch"].calls if name == binary]
        if len(bodies) >= count:
            return bodies
        time.sleep(0.1)
    return bodies


@pytest.mark.parametrize("fault, error", [("http-500", "Lambda.ServiceException"),
                                          ("http-503", "Lambda.AWSLambdaException"),
                                          ("throttling", "Lambda.TooManyRequestsException"),
                                          ("applied-then-dropped", "Lambda.SdkClientException")])
def test_a_lambda_service_failure_reaches_the_task_under_awss_name(emu: dict[str, Any], fault: str, error: str) -> None:
    """Not the function's error but the Lambda service's: Step Functions names it Lambda.<error>,
    an error Lambda's API does not model (the common ServiceUnavailable) Lambda.AWSLambdaException,
    and a call left unanswered Lambda.SdkClientException (what the state machines' Retry lists)."""
    arn = function(emu, f"fn-service-{fault}")
    definition = {"StartAt": "Step", "States": {"Step": {"Type": "Task", "Resource": arn, "End": True}}}
    machine = state_machine(emu, f"sm-service-{fault}", definition, ["lambda:InvokeFunction"])
    with faults(emu, {"action": "lambda:InvokeFunction", "fault": fault, "role": f"sm-service-{fault}-role"}):
        failed = run(emu, machine, {"x": 1})
    assert (failed["status"], failed["error"]) == ("FAILED", error), failed


@pytest.mark.parametrize("fault, error", [("http-500", "EventBridge.EventBridgeException"),
                                          ("applied-then-dropped", "EventBridge.SdkClientException"),
                                          ("failed-entry", "EventBridge.FailedEntry")])
def test_a_put_events_task_fails_under_awss_names(emu: dict[str, Any], fault: str, error: str) -> None:
    definition = {"StartAt": "Tell", "States": {"Tell": {
        "Type": "Task", "Resource": "arn:aws:states:::events:putEvents", "End": True,
        "Parameters": {"Entries": [{"Source": "custom.tell", "DetailType": "t", "Detail": {"x": 1}}]}}}}
    machine = state_machine(emu, f"sm-put-events-{fault}", definition, ["events:PutEvents"], resource="*")
    with faults(emu, {"action": "events:PutEvents", "fault": fault}):
        failed = run(emu, machine, {})
    assert (failed["status"], failed["error"]) == ("FAILED", error), failed


def test_a_duplicate_invoke_runs_the_function_twice_and_answers_the_second_run(emu: dict[str, Any]) -> None:
    arn = function(emu, "fn-invoked-twice")
    with faults(emu, {"action": "lambda:InvokeFunction", "fault": "duplicate-delivery"}):
        answer = client(emu, "lambda").invoke(FunctionName=arn, Payload=b'{"n": 1}')
    assert json.loads(answer["Payload"].read()) == {"echo": {"n": 1}, "function": "bin-invoked-twice"}
    assert calls_of(emu, "bin-invoked-twice", 2) == [{"n": 1}, {"n": 1}]
    client(emu, "lambda").invoke(FunctionName=arn, Payload=b'{"n": 2}')
    assert calls_of(emu, "bin-invoked-twice", 3) == [{"n": 1}, {"n": 1}, {"n": 2}], "only the armed call runs twice"


def test_a_duplicate_event_reaches_each_target_twice_with_one_id(emu: dict[str, Any]) -> None:
    arn = function(emu, "fn-event-twice")
    client(emu, "lambda").add_permission(FunctionName=arn, StatementId="events", Action="lambda:InvokeFunction",
                                         Principal="events.amazonaws.com")
    events = client(emu, "events")
    events.put_rule(Name="twice", EventPattern=json.dumps({"source": ["custom.twice"]}))
    events.put_targets(Rule="twice", Targets=[{"Id": "fn", "Arn": arn}])
    with faults(emu, {"action": "events:PutEvents", "fault": "duplicate-delivery"}):
        events.put_events(Entries=[{"Source": "custom.twice", "DetailType": "t", "Detail": "{}"}])
        events.put_events(Entries=[{"Source": "custom.twice", "DetailType": "t", "Detail": "{}"}])
    ids = [body["id"] for body in calls_of(emu, "bin-event-twice", 3)]
    assert len(ids) == 3 and len(set(ids)) == 2 and ids.count(ids[0]) == 2, ids


def test_sns_delivers_awss_event_shape_to_the_function(emu: dict[str, Any]) -> None:
    arn = function(emu, "fn-sns")
    sns = client(emu, "sns")
    topic = sns.create_topic(Name="connections")["TopicArn"]
    subscription = sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=arn, ReturnSubscriptionArn=True)["SubscriptionArn"]
    sns.publish(TopicArn=topic, Message='{"eventType": "Connect"}', Subject="hello")
    for _ in range(50):
        events = [body for name, body in emu["watch"].calls if name == "bin-sns"]
        if events:
            break
        time.sleep(0.1)
    record = events[0]["Records"][0]
    assert (record["EventSource"], record["EventSubscriptionArn"]) == ("aws:sns", subscription)
    assert (record["Sns"]["TopicArn"], record["Sns"]["Message"], record["Sns"]["Subject"]) == (topic, '{"eventType": "Connect"}', "hello")


def test_a_duplicate_delivery_fault_delivers_one_message_twice(emu: dict[str, Any]) -> None:
    """SNS delivers at least once; the fault makes the next delivery a duplicate (same message ID)."""
    arn = function(emu, "fn-twice")
    sns = client(emu, "sns")
    topic = sns.create_topic(Name="twice")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=arn)
    with faults(emu, {"action": "sns:Publish", "fault": "duplicate-delivery"}):
        first = sns.publish(TopicArn=topic, Message="once")["MessageId"]
        second = sns.publish(TopicArn=topic, Message="and again")["MessageId"]
        ids = [body["Records"][0]["Sns"]["MessageId"] for body in calls_of(emu, "bin-twice", 3)]
    assert sorted(ids) == sorted([first, first, second]), ids


def test_a_failed_async_invocation_is_retried_then_recorded_to_its_on_failure_queue(emu: dict[str, Any]) -> None:
    """Lambda retries MaximumRetryAttempts times, then sends the invocation record (Lambda
    developer guide, "Capturing records of Lambda asynchronous invocations") to the OnFailure
    queue, with the function's role's sqs:SendMessage."""
    post(emu, "/moto-api/config", json.dumps({"lambda": {"async_retry_delays": [0.2, 0.4]}}).encode())
    sqs = client(emu, "sqs")
    url = sqs.create_queue(QueueName="failed-invocations")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    arn = function(emu, "fn-async-fails")
    iam = client(emu, "iam")
    iam.update_assume_role_policy(RoleName="fn-async-fails-role", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="fn-async-fails-role", PolicyName="destination", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue}]}))
    lam = client(emu, "lambda")
    lam.put_function_event_invoke_config(FunctionName="fn-async-fails", MaximumRetryAttempts=1,
                                         DestinationConfig={"OnFailure": {"Destination": queue}})
    event = {"fail": "Boom", "n": 1}
    assert lam.invoke(FunctionName="fn-async-fails", InvocationType="Event",
                      Payload=json.dumps(event).encode())["StatusCode"] == 202
    messages: list[dict[str, Any]] = []
    for _ in range(30):
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            break
    assert len(messages) == 1, messages
    record = json.loads(messages[0]["Body"])
    # The record is sent after the last attempt: by now every attempt has reached the function.
    assert [body for name, body in emu["watch"].calls if name == "bin-async-fails"] == [event, event]
    assert (record["version"], record["requestContext"]["condition"], record["requestContext"]["approximateInvokeCount"]) == (
        "1.0", "RetriesExhausted", 2), record
    assert record["requestContext"]["functionArn"] == f"{arn}:$LATEST"
    assert (record["requestPayload"], record["responseContext"]) == (
        event, {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}), record
    assert record["responsePayload"] == {"errorType": "Boom", "errorMessage": "bin-async-fails failed on purpose"}


def test_without_sqs_send_message_the_failure_record_is_dropped(emu: dict[str, Any]) -> None:
    """The destination takes the execution role's sqs:SendMessage: without it nothing arrives,
    while a function whose role has it, failing after it (one thread per invocation, in order of
    the attempts' end), does deliver."""
    post(emu, "/moto-api/config", json.dumps({"lambda": {"async_retry_delays": [0.2, 0.4]}}).encode())
    sqs, lam, iam = client(emu, "sqs"), client(emu, "lambda"), client(emu, "iam")
    url = sqs.create_queue(QueueName="failed-denied")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lambda_trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    for name, allowed in (("fn-denied", False), ("fn-allowed", True)):
        function(emu, name)
        iam.update_assume_role_policy(RoleName=f"{name}-role", PolicyDocument=lambda_trust)
        if allowed:
            iam.put_role_policy(RoleName=f"{name}-role", PolicyName="destination", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue}]}))
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0,
                                             DestinationConfig={"OnFailure": {"Destination": queue}})
    lam.invoke(FunctionName="fn-denied", InvocationType="Event", Payload=json.dumps({"fail": "Boom"}).encode())
    for _ in range(50):  # the denied function's only attempt has ended
        if any(name == "bin-denied" for name, _ in emu["watch"].calls):
            break
        time.sleep(0.1)
    lam.invoke(FunctionName="fn-allowed", InvocationType="Event", Payload=json.dumps({"fail": "Boom"}).encode())
    messages: list[dict[str, Any]] = []
    for _ in range(30):
        messages += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            break
    functions = [json.loads(m["Body"])["requestContext"]["functionArn"].split(":")[6] for m in messages]
    assert functions == ["fn-allowed"], functions


# --- EventBridge and RDS events ----------------------------------------------------------------


def capture_queue(emu: dict[str, Any], pattern: dict[str, Any]) -> str:
    sqs, events = client(emu, "sqs"), client(emu, "events")
    url = sqs.create_queue(QueueName=f"q{time.time_ns()}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = f"r{time.time_ns()}"
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    return url


def drain(emu: dict[str, Any], url: str) -> list[dict[str, Any]]:
    messages = client(emu, "sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_rds_api_calls_reach_eventbridge_as_cloudtrail_events(emu: dict[str, Any]) -> None:
    url = capture_queue(emu, {"source": ["aws.rds"], "detail-type": ["AWS API Call via CloudTrail"]})
    ec2, rds = client(emu, "ec2"), client(emu, "rds")
    net = make_network(ec2)
    rds.create_db_subnet_group(DBSubnetGroupName="g", DBSubnetGroupDescription="g", SubnetIds=net["subnets"])
    db = rds.create_db_instance(DBInstanceIdentifier="events-db", Engine="mysql", EngineVersion="8.0.35",
                                DBInstanceClass="db.t3.micro", DBSubnetGroupName="g", MasterUsername="admin",
                                MasterUserPassword="secret-password", Tags=[{"Key": "team", "Value": "orders"}])["DBInstance"]
    rds.add_tags_to_resource(ResourceName=db["DBInstanceArn"], Tags=[{"Key": "tidb-privatelink", "Value": "true"}])
    rds.remove_tags_from_resource(ResourceName=db["DBInstanceArn"], TagKeys=["tidb-privatelink"])
    rds.delete_db_instance(DBInstanceIdentifier="events-db", SkipFinalSnapshot=True)
    events = {e["detail"]["eventName"]: e for e in drain(emu, url) + drain(emu, url)}
    assert set(events) == {"CreateDBInstance", "AddTagsToResource", "RemoveTagsFromResource", "DeleteDBInstance"}
    for event in events.values():
        assert (event["source"], event["detail"]["eventSource"]) == ("aws.rds", "rds.amazonaws.com")
        assert "T" in event["time"] and "ingestion-time" not in event
    assert events["AddTagsToResource"]["detail"]["requestParameters"] == {
        "resourceName": db["DBInstanceArn"], "tags": [{"key": "tidb-privatelink", "value": "true"}]}
    assert events["RemoveTagsFromResource"]["detail"]["requestParameters"] == {
        "resourceName": db["DBInstanceArn"], "tagKeys": ["tidb-privatelink"]}
    create = events["CreateDBInstance"]["detail"]["requestParameters"]
    assert (create["dBInstanceIdentifier"], create["tags"], create["masterUserPassword"]) == (
        "events-db", [{"key": "team", "value": "orders"}], "****")
    assert events["DeleteDBInstance"]["detail"]["requestParameters"]["dBInstanceIdentifier"] == "events-db"


def test_restores_and_read_replicas_reach_eventbridge_as_creations(emu: dict[str, Any]) -> None:
    url = capture_queue(emu, {"source": ["aws.rds"], "detail-type": ["AWS API Call via CloudTrail"],
                              "detail": {"eventName": [{"prefix": "Restore"}, "CreateDBInstanceReadReplica"]}})
    ec2, rds = client(emu, "ec2"), client(emu, "rds")
    net = make_network(ec2, cidr="10.22.0.0/16", subnets=(("10.22.1.0/24", "us-east-1a"), ("10.22.2.0/24", "us-east-1b")))
    rds.create_db_subnet_group(DBSubnetGroupName="rs", DBSubnetGroupDescription="rs", SubnetIds=net["subnets"])
    rds.create_db_instance(DBInstanceIdentifier="source-db", Engine="mysql", EngineVersion="8.0.35",
                           DBInstanceClass="db.t3.micro", DBSubnetGroupName="rs", MasterUsername="admin",
                           MasterUserPassword="secret-password", BackupRetentionPeriod=1)
    rds.create_db_snapshot(DBInstanceIdentifier="source-db", DBSnapshotIdentifier="source-snap")
    tags = [{"Key": "tidb-privatelink", "Value": "true"}]
    rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="copy-db", DBSnapshotIdentifier="source-snap",
                                             DBSubnetGroupName="rs", Tags=tags)
    rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="source-db", TargetDBInstanceIdentifier="pitr-db",
                                             UseLatestRestorableTime=True, DBSubnetGroupName="rs", Tags=tags)
    rds.create_db_instance_read_replica(DBInstanceIdentifier="replica-db", SourceDBInstanceIdentifier="source-db",
                                        Tags=tags)
    events = {e["detail"]["eventName"]: e["detail"] for e in drain(emu, url) + drain(emu, url)}
    assert set(events) == {"RestoreDBInstanceFromDBSnapshot", "RestoreDBInstanceToPointInTime",
                           "CreateDBInstanceReadReplica"}
    created = {name: (d["responseElements"]["dBInstanceIdentifier"], d["requestParameters"]["tags"])
               for name, d in events.items()}
    assert created == {
        "RestoreDBInstanceFromDBSnapshot": ("copy-db", [{"key": "tidb-privatelink", "value": "true"}]),
        "RestoreDBInstanceToPointInTime": ("pitr-db", [{"key": "tidb-privatelink", "value": "true"}]),
        "CreateDBInstanceReadReplica": ("replica-db", [{"key": "tidb-privatelink", "value": "true"}]),
    }
    assert events["RestoreDBInstanceToPointInTime"]["requestParameters"]["targetDBInstanceIdentifier"] == "pitr-db"


def test_forced_failover_moves_the_ip_and_emits_failover_events(emu: dict[str, Any]) -> None:
    url = capture_queue(emu, {"source": ["aws.rds"], "detail-type": ["RDS DB Instance Event"]})
    ec2, rds = client(emu, "ec2"), client(emu, "rds")
    net = make_network(ec2, cidr="10.21.0.0/16", subnets=(("10.21.1.0/24", "us-east-1a"), ("10.21.2.0/24", "us-east-1b")))
    rds.create_db_subnet_group(DBSubnetGroupName="fo", DBSubnetGroupDescription="fo", SubnetIds=net["subnets"])
    db = rds.create_db_instance(DBInstanceIdentifier="fo-db", Engine="mysql", EngineVersion="8.0.35", MultiAZ=True,
                                DBInstanceClass="db.t3.micro", DBSubnetGroupName="fo", MasterUsername="admin",
                                MasterUserPassword="secret-password")["DBInstance"]

    def address() -> list[str]:
        return [i["PrivateIpAddress"] for i in ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [net["vpc"]]}, {"Name": "description", "Values": ["RDSNetworkInterface"]}])["NetworkInterfaces"]]

    before = address()
    rds.reboot_db_instance(DBInstanceIdentifier="fo-db", ForceFailover=True)
    assert address() != before
    events = drain(emu, url)
    assert [e["detail"]["EventID"] for e in events] == ["RDS-EVENT-0013", "RDS-EVENT-0015", "RDS-EVENT-0049"]
    assert {e["detail"]["SourceArn"] for e in events} == {db["DBInstanceArn"]}
    assert events[0]["detail"]["EventCategories"] == ["failover"] and events[0]["resources"] == [db["DBInstanceArn"]]
    rds.reboot_db_instance(DBInstanceIdentifier="fo-db")
    assert [e["detail"]["EventID"] for e in drain(emu, url)] == ["RDS-EVENT-0006"]


def test_cluster_calls_reach_eventbridge_and_a_failover_emits_cluster_events(emu: dict[str, Any]) -> None:
    trail = capture_queue(emu, {"source": ["aws.rds"], "detail-type": ["AWS API Call via CloudTrail"],
                                "detail": {"eventName": [{"suffix": "DBCluster"}, {"prefix": "RestoreDBCluster"},
                                                         "AddTagsToResource"]}})
    cluster_events = capture_queue(emu, {"source": ["aws.rds"], "detail-type": ["RDS DB Cluster Event"]})
    ec2, rds = client(emu, "ec2"), client(emu, "rds")
    net = make_network(ec2, cidr="10.23.0.0/16", subnets=(("10.23.1.0/24", "us-east-1a"), ("10.23.2.0/24", "us-east-1b")))
    rds.create_db_subnet_group(DBSubnetGroupName="cl", DBSubnetGroupDescription="cl", SubnetIds=net["subnets"])
    tags = [{"Key": "tidb-privatelink", "Value": "true"}]
    cluster = rds.create_db_cluster(DBClusterIdentifier="cl-db", Engine="aurora-mysql", DBSubnetGroupName="cl",
                                    MasterUsername="admin", MasterUserPassword="secret-password", Tags=tags)["DBCluster"]
    for number, zone in ((1, "us-east-1a"), (2, "us-east-1b")):
        rds.create_db_instance(DBInstanceIdentifier=f"cl-db-{number}", DBClusterIdentifier="cl-db",
                               Engine="aurora-mysql", DBInstanceClass="db.r6g.large", AvailabilityZone=zone)
    rds.add_tags_to_resource(ResourceName=cluster["DBClusterArn"], Tags=tags)
    rds.create_db_cluster_snapshot(DBClusterIdentifier="cl-db", DBClusterSnapshotIdentifier="cl-snap")
    rds.restore_db_cluster_from_snapshot(DBClusterIdentifier="cl-copy", SnapshotIdentifier="cl-snap",
                                         Engine="aurora-mysql", DBSubnetGroupName="cl", Tags=tags)
    rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier="cl-clone", SourceDBClusterIdentifier="cl-db",
                                            RestoreType="copy-on-write", UseLatestRestorableTime=True, Tags=tags)
    rds.delete_db_cluster(DBClusterIdentifier="cl-copy", SkipFinalSnapshot=True)
    rds.failover_db_cluster(DBClusterIdentifier="cl-db")

    details = {e["detail"]["eventName"]: e["detail"] for e in drain(emu, trail) + drain(emu, trail)}
    assert set(details) == {"CreateDBCluster", "AddTagsToResource", "RestoreDBClusterFromSnapshot",
                            "RestoreDBClusterToPointInTime", "DeleteDBCluster"}
    assert details["AddTagsToResource"]["requestParameters"]["resourceName"] == cluster["DBClusterArn"]
    created = {name: (details[name]["responseElements"]["dBClusterIdentifier"], details[name]["requestParameters"]["tags"])
               for name in ("CreateDBCluster", "RestoreDBClusterFromSnapshot", "RestoreDBClusterToPointInTime")}
    assert created == {"CreateDBCluster": ("cl-db", [{"key": "tidb-privatelink", "value": "true"}]),
                       "RestoreDBClusterFromSnapshot": ("cl-copy", [{"key": "tidb-privatelink", "value": "true"}]),
                       "RestoreDBClusterToPointInTime": ("cl-clone", [{"key": "tidb-privatelink", "value": "true"}])}
    assert details["CreateDBCluster"]["requestParameters"]["masterUserPassword"] == "****"
    assert details["DeleteDBCluster"]["responseElements"]["status"] == "deleting"

    failover = drain(emu, cluster_events)
    assert [e["detail"]["EventID"] for e in failover] == ["RDS-EVENT-0073", "RDS-EVENT-0071"]
    assert [e["detail"]["Message"] for e in failover] == ["Started cross AZ failover to DB instance: cl-db-2",
                                                          "Completed failover to DB instance: cl-db-2"]
    for event in failover:
        assert event["resources"] == [cluster["DBClusterArn"]]
        assert {k: event["detail"][k] for k in ("SourceType", "SourceArn", "SourceIdentifier", "EventCategories")} == {
            "SourceType": "CLUSTER", "SourceArn": cluster["DBClusterArn"], "SourceIdentifier": "rds:cl-db",
            "EventCategories": ["failover"]}
    rds.stop_db_cluster(DBClusterIdentifier="cl-db")
    rds.start_db_cluster(DBClusterIdentifier="cl-db")
    assert [e["detail"]["EventID"] for e in drain(emu, cluster_events)] == ["RDS-EVENT-0150", "RDS-EVENT-0151"]


def test_rules_start_state_machines_with_the_target_role_and_match_arrays_of_objects(emu: dict[str, Any]) -> None:
    sfn_events = client(emu, "events")
    machine = state_machine(emu, "sm-events", {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}, [])
    iam = client(emu, "iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    allowed = iam.create_role(RoleName="events-start", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="events-start", PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "states:StartExecution", "Resource": machine}]}))
    denied = iam.create_role(RoleName="events-nothing", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    pattern = {"source": ["custom.test"], "detail": {"tags": {"key": ["tidb-privatelink"]}}}
    sfn_events.put_rule(Name="start", EventPattern=json.dumps(pattern))
    sfn_events.put_targets(Rule="start", Targets=[{"Id": "ok", "Arn": machine, "RoleArn": allowed},
                                                  {"Id": "no", "Arn": machine, "RoleArn": denied}])
    sfn_events.put_rule(Name="off", EventPattern=json.dumps(pattern), State="DISABLED")
    sfn_events.put_targets(Rule="off", Targets=[{"Id": "off", "Arn": machine, "RoleArn": allowed}])
    detail = {"tags": [{"key": "team", "value": "x"}, {"key": "tidb-privatelink", "value": "true"}]}
    sfn_events.put_events(Entries=[{"Source": "custom.test", "DetailType": "t", "Detail": json.dumps(detail)},
                                   {"Source": "custom.test", "DetailType": "t", "Detail": json.dumps({"tags": [{"key": "other"}]})}])
    # The emulator starts a target's execution before PutEvents answers (events_targets.deliver).
    executions = client(emu, "stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    assert len(executions) == 1, "one matching event, one enabled target whose role may start the machine"
    started = client(emu, "stepfunctions").describe_execution(executionArn=executions[0]["executionArn"])
    assert json.loads(started["input"])["detail"] == detail


# --- IAM ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def enforced() -> Iterator[dict[str, Any]]:
    process, ready = start_emulator("--watch-pid", str(os.getpid()), "--config",
                                    json.dumps({"stepfunctions": {"execute_state_machine": True}}))
    emu = {"url": f"http://127.0.0.1:{ready['port']}", "watch": FakeWatch()}
    iam = client(emu, "iam")
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    iam.create_user(UserName="describer")
    iam.put_user_policy(UserName="describer", PolicyName="rds", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["rds:DescribeDBInstances", "ec2:CreateSecurityGroup"],
                                                 "Resource": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:*"}]}))
    limited = iam.create_access_key(UserName="describer")["AccessKey"]
    post(emu, "/moto-api/reset-auth", b"0", content_type="text/plain")
    emu["admin"] = (key["AccessKeyId"], key["SecretAccessKey"])
    emu["limited"] = (limited["AccessKeyId"], limited["SecretAccessKey"])
    try:
        yield emu
    finally:
        emu["watch"].server.shutdown()
        process.terminate()
        process.wait(timeout=10)


def test_enforcement_checks_actions_even_when_statements_name_resources(enforced: dict[str, Any]) -> None:
    rds = client(enforced, "rds", *enforced["limited"])
    rds.describe_db_instances()
    with pytest.raises(ClientError) as denied:
        rds.create_db_subnet_group(DBSubnetGroupName="x", DBSubnetGroupDescription="x", SubnetIds=["subnet-1"])
    assert "not authorized" in str(denied.value)


def test_signatures_are_checked_over_the_bytes_sent_and_list_functions_works(enforced: dict[str, Any]) -> None:
    admin = enforced["admin"]
    assert client(enforced, "lambda", *admin).list_functions()["Functions"] == []
    # aws-sdk-rust percent-encodes a space as %20 where botocore writes "+": sign such a body.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    vpc = client(enforced, "ec2", *admin).create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
    body = f"Action=CreateSecurityGroup&Version=2016-11-15&GroupName=g1&GroupDescription=two%20words&VpcId={vpc}"
    request = AWSRequest(method="POST", url=enforced["url"] + "/", data=body.encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(*admin), "ec2", REGION).add_auth(request)
    prepared = request.prepare()
    reply = urllib.request.urlopen(urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers),
                                                          method="POST"), timeout=10).read()
    assert b"<groupId>sg-" in reply


def test_step_functions_calls_lambda_as_the_state_machines_role(enforced: dict[str, Any]) -> None:
    admin = enforced["admin"]
    iam = client(enforced, "iam", *admin)
    role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    arn = client(enforced, "lambda", *admin).create_function(
        FunctionName="fn-guarded", Runtime="provided.al2023", Role=role, Handler="bootstrap",
        Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})["FunctionArn"]
    route(enforced, {arn: {"url": enforced["watch"].url, "name": "bin-guarded"}})
    definition = {"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": arn, "End": True}}}
    results = {}
    for name, actions in (("sm-may", ["lambda:InvokeFunction"]), ("sm-may-not", ["lambda:GetFunction"])):
        machine_role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
        iam.put_role_policy(RoleName=f"{name}-role", PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": arn}]}))
        sfn = client(enforced, "stepfunctions", *admin)
        machine = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=machine_role)["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=machine, name="e", input="{}")["executionArn"]
        for _ in range(100):
            description = sfn.describe_execution(executionArn=execution)
            if description["status"] != "RUNNING":
                break
            time.sleep(0.1)
        results[name] = description
    assert results["sm-may"]["status"] == "SUCCEEDED", results["sm-may"]
    assert results["sm-may-not"]["status"] == "FAILED"
    assert "lambda:InvokeFunction" in results["sm-may-not"].get("cause", "")


# --- Step Functions execution status changes ------------------------------------------------------


def test_execution_status_changes_reach_eventbridge_in_aws_shape(emu: dict[str, Any]) -> None:
    url = capture_queue(emu, {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]})
    passes = state_machine(emu, f"ok{time.time_ns()}", {"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Result": {"done": True}, "End": True}}}, [])
    fails = state_machine(emu, f"ko{time.time_ns()}", {"StartAt": "F", "States": {
        "F": {"Type": "Fail", "Error": "Broken", "Cause": "on purpose"}}}, [])
    succeeded, failed = run(emu, passes, {"n": 1}), run(emu, fails, {"n": 2})
    seen: list[dict[str, Any]] = []
    for _ in range(20):
        seen += drain(emu, url)
        if len(seen) >= 4:
            break
    by_execution = {}
    for event in seen:
        assert event["resources"] == [event["detail"]["executionArn"]]
        by_execution.setdefault(event["detail"]["executionArn"], []).append(event["detail"])
    ok, ko = by_execution[succeeded["executionArn"]], by_execution[failed["executionArn"]]
    assert [d["status"] for d in ok] == ["RUNNING", "SUCCEEDED"] and [d["status"] for d in ko] == ["RUNNING", "FAILED"]
    assert ok[0]["stopDate"] is None and ok[0]["output"] is None
    assert (json.loads(ok[1]["input"]), json.loads(ok[1]["output"]), ok[1]["outputDetails"]) == (
        {"n": 1}, {"done": True}, {"included": True})
    assert ok[1]["stateMachineArn"] == passes and ok[1]["stopDate"] >= ok[1]["startDate"] > 0
    assert (ko[1]["error"], ko[1]["cause"], ko[1]["output"]) == ("Broken", "on purpose", None)
