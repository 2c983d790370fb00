#!/usr/bin/env python3
"""Writes the state machine definitions, statemachine/provision.asl.json and
statemachine/deprovision.asl.json, from the states below.

Amazon States Language has no references: every Task repeats its Retry policy, both workflows
read their input and take their turn with the same states, and every poll is the same loop. Here
each of those is written once. template.yaml deploys the JSON files, which stay checked in;
`--check` (run by scripts/check-static) fails when one differs from what this script writes.

Every poll is one loop (README, "Developing"): the step answers where it is (a status, or in the
teardown the error TeardownPending), a Choice goes on or gives up once the poll count reaches its
limit, a Wait state waits, and a Pass counts the poll before the step runs again.

Usage: statemachines.py [--check] [--root DIR]. Standard library only.
Tests: scripts/test_check_definitions.py (the last ones).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

State = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent


# --- Retry policies ---------------------------------------------------------------------------


def backoff(errors: list[str], *, interval: int, attempts: int, max_delay: int | None = None) -> State:
    """A Retry policy: the interval doubles from `interval` seconds, with full jitter."""
    policy: State = {"ErrorEquals": errors, "IntervalSeconds": interval, "BackoffRate": 2.0, "MaxAttempts": attempts}
    if max_delay is not None:
        policy["MaxDelaySeconds"] = max_delay
    return policy | {"JitterStrategy": "FULL"}


# Every function Task retries exactly these (src/error.rs holds them against StepError's transient
# names): throttling and unavailability, Lambda's own service errors (those the Step Functions
# Developer Guide, "Handle Lambda service exceptions", names), and a step that ran out of its Lambda
# time (every step is safe to run again).
TRANSIENT = backoff(
    ["Throttled", "AwsUnavailable", "Lambda.ServiceException", "Lambda.AWSLambdaException",
     "Lambda.SdkClientException", "Lambda.ClientExecutionTimeoutException", "Lambda.TooManyRequestsException",
     "Lambda.Unknown", "TiDBCloudThrottled",
     "TiDBCloudUnavailable", "OutOfTime", "Sandbox.Timedout"],
    interval=2, attempts=6, max_delay=60,
)
TURN_TABLE = backoff(
    ["DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.ThrottlingException",
     "DynamoDB.RequestLimitExceeded", "DynamoDB.InternalServerErrorException", "States.Timeout"],
    interval=2, attempts=6, max_delay=60,
)
EVENTBRIDGE = backoff(
    ["EventBridge.EventBridgeException", "EventBridge.SdkClientException", "EventBridge.FailedEntry"],
    interval=2, attempts=5,
)
ROLLBACK_START = backoff(
    ["StepFunctions.ExecutionLimitExceededException", "StepFunctions.SdkClientException", "States.Timeout"],
    interval=5, attempts=5,
)
RDS_TAGGING = backoff(["Rds.ThrottlingException", "Rds.RdsException", "States.Timeout"], interval=2, attempts=4)
RDS_UNTAGGING = backoff(["Rds.ThrottlingException", "States.Timeout"], interval=2, attempts=4)


# --- Building blocks ----------------------------------------------------------------------------


def on_failure(then: str, result_path: str = "$.error", comment: str | None = None) -> State:
    catch: State = {"ErrorEquals": ["States.ALL"]}
    if comment:
        catch["Comment"] = comment
    return catch | {"ResultPath": result_path, "Next": then}


def function_step(comment: str, function: str, result: str, then: str, *, failure: str,
                  parameters: State | None = None, catch: tuple[State, ...] = ()) -> State:
    """A Task that runs one of the stack's functions (template.yaml's <function>FunctionArn)."""
    state: State = {"Type": "Task", "Comment": comment, "Resource": f"${{{function}FunctionArn}}"}
    if parameters:
        state["Parameters"] = parameters
    return state | {"ResultPath": result, "Retry": [TRANSIENT], "Next": then, "Catch": [*catch, on_failure(failure)]}


def poll_loop(subject: str, counter: str, seconds: int, poll: str, comment: str | None = None) -> dict[str, State]:
    """WaitFor<subject> and Count<subject>Poll: the Choice before them has read the poll's answer and
    neither gone on nor given up; wait, count the poll in $.<counter>, then poll again."""
    wait: State = {"Type": "Wait"}
    if comment:
        wait["Comment"] = comment
    count = {"count.$": f"States.MathAdd($.{counter}.count, 1)"}
    return {
        f"WaitFor{subject}": wait | {"Seconds": seconds, "Next": f"Count{subject}Poll"},
        f"Count{subject}Poll": {"Type": "Pass", "Parameters": count, "ResultPath": f"$.{counter}", "Next": poll},
    }


def polls_reached(counter: str, polls: int, then: str) -> State:
    return {"Variable": f"$.{counter}.count", "NumericGreaterThanEquals": polls, "Next": then}


def equals(variable: str, value: str, then: str) -> State:
    return {"Variable": variable, "StringEquals": value, "Next": then}


def present(variable: str, then: str) -> State:
    return {"Variable": variable, "IsPresent": True, "Next": then}


def gave_up(error: str, cause: str, then: str) -> State:
    """An error the workflow names itself: a poll reached its limit, the load balancer failed."""
    return {"Type": "Pass", "Result": {"Error": error, "Cause": cause}, "ResultPath": "$.error", "Next": then}


def fresh_counters(*counters: str) -> State:
    return {counter: {"count": 0} for counter in counters}


# --- Reading the input: the instance's key is its identifier, a DB cluster's cluster:<identifier> ----

TAGGED_IDENTIFIER = "States.ArrayGetItem(States.StringSplit($.detail.requestParameters.resourceName, ':'), 6)"


def cluster_key(identifier: str) -> str:
    return f"States.Format('cluster:{{}}', {identifier})"


def reader(comment: str, identifier: str, by_event: bool, start: State) -> State:
    """A Read* state: keep only the instance's key and what the workflow starts with. Until
    AwaitTurn answers, the turn to release is the database's own, and no VPC's turn is held."""
    parameters = {"db_instance_identifier.$": identifier, "triggered_by_event": by_event,
                  "turn": {"lease_key.$": identifier, "vpc_id": None}, "shared_turn": {"decision": "none"},
                  "shared_turn_poll": {"count": 0}, **start}
    return {"Type": "Pass", "Comment": comment, "Parameters": parameters, "Next": "AwaitTurn"}


def which_tagged_resource() -> State:
    return {
        "Type": "Choice",
        "Comment": "A DB cluster's ARN reads arn:aws:rds:<region>:<account>:cluster:<identifier>, an instance's ...:db:<identifier>.",
        "Choices": [{"Variable": "$.detail.requestParameters.resourceName", "StringMatches": "arn:*:rds:*:*:cluster:*",
                     "Next": "ReadClusterTagEvent"}],
        "Default": "ReadTagEvent",
    }


# --- The turn: one workflow at a time per instance (src/turn.rs) --------------------------------

TURN_POLLS, TURN_WAIT = 180, 20


def release(lease_key: str, then: str, error: str, comment: str) -> State:
    """Give back a turn (the lease at `lease_key`) if this execution still holds it."""
    return {
        "Type": "Task",
        "Comment": comment,
        "Resource": "arn:${Partition}:states:::dynamodb:deleteItem",
        "Parameters": {
            "TableName": "${TurnTableName}",
            "Key": {"db_instance_identifier": {"S.$": lease_key}},
            "ConditionExpression": "holder = :me",
            "ExpressionAttributeValues": {":me": {"S.$": "$$.Execution.Id"}},
        },
        "ResultPath": None,
        "Retry": [TURN_TABLE],
        "Catch": [on_failure(
            then, error,
            "Not held by this execution (ConditionalCheckFailed), or not released: the next execution takes over a lease whose holder has ended.",
        )],
        "Next": then,
    }


def turn(workflow: str, go: str, failed: str, succeeded: str, parameters: State) -> dict[str, State]:
    """AwaitTurn and its poll, and ReleaseTurn, which every way out of the workflow passes."""
    await_turn = function_step(
        "One workflow at a time per instance; an event-started execution acts only if the instance's current state still asks for it.",
        "AwaitTurn", "$.turn", "IsItOurTurn", failure="ReleaseTurn",
        parameters={"db_instance_identifier.$": "$.db_instance_identifier", "workflow": workflow,
                    "execution_id.$": "$$.Execution.Id", "triggered_by_event.$": "$.triggered_by_event", **parameters},
    )
    return {
        "AwaitTurn": await_turn,
        "IsItOurTurn": {
            "Type": "Choice",
            "Choices": [equals("$.turn.decision", "go", go), equals("$.turn.decision", "skip", "ReleaseTurn"),
                        polls_reached("turn_poll", TURN_POLLS, "TurnNotComingInTime")],
            "Default": "WaitForTurn",
        },
        **poll_loop("Turn", "turn_poll", TURN_WAIT, "AwaitTurn"),
        "TurnNotComingInTime": gave_up(
            "TurnNotComingInTime",
            f"Another workflow for this instance, or the instance itself, was still busy after an hour ({TURN_POLLS} polls {TURN_WAIT} seconds apart). Run the workflow again once it is done.",
            "ReleaseTurn",
        ),
        "ReleaseTurn": {
            "Type": "Choice",
            "Comment": "Every way out passes here: give back the VPC's turn if this execution still holds it, then the instance's.",
            "Choices": [equals("$.shared_turn.decision", "go", "ReleaseSharedTurn")],
            "Default": "ReleaseDatabaseTurn",
        },
        "ReleaseSharedTurn": release("$.shared_turn.lease_key", "ReleaseDatabaseTurn", "$.shared_release_error",
                                     "The VPC's turn, taken before the shared parts were changed."),
        "ReleaseDatabaseTurn": release(
            "$.turn.lease_key", "HowItEnded", "$.release_error",
            "The instance's turn, if this execution still holds it (a rollback may have taken it over; an execution that never took it holds nothing)."),
        "HowItEnded": {
            "Type": "Choice",
            "Choices": [present("$.error", failed), equals("$.turn.decision", "skip", "NothingToDo")],
            "Default": succeeded,
        },
        "NothingToDo": {
            "Type": "Succeed",
            "Comment": "The instance's current state does not ask for this workflow (a repeated or out-of-date event).",
        },
    }


# The VPC's turn is asked for often: it is held only while shared parts change (seconds, or the
# minutes a new load balancer takes to become active), not for a whole workflow.
SHARED_TURN_POLLS, SHARED_TURN_WAIT = 720, 5


def shared_turn(workflow: str, go: str, failure: str, parameters: State) -> dict[str, State]:
    """With per-vpc sharing (the instance's turn named a VPC), also take the VPC's turn before going
    on to `go`: the databases of a VPC take turns only on their shared parts. Released by
    ReleaseTurn on every way out, or earlier by the workflow once the shared parts are done."""
    return {
        "NeedsSharedTurn": {
            "Type": "Choice",
            "Comment": "The turn names a VPC with per-vpc sharing only: then the load balancer and what fronts it are the VPC's.",
            "Choices": [{"Variable": "$.turn.vpc_id", "IsNull": True, "Next": go}],
            "Default": "AwaitSharedTurn",
        },
        "AwaitSharedTurn": function_step(
            "One workflow at a time per VPC on its shared load balancer, security group, endpoint service and TiDB Cloud connection.",
            "AwaitTurn", "$.shared_turn", "IsItOurSharedTurn", failure=failure,
            parameters={"db_instance_identifier.$": "$.db_instance_identifier", "workflow": workflow,
                        "execution_id.$": "$$.Execution.Id", "vpc_id.$": "$.turn.vpc_id", **parameters},
        ),
        "IsItOurSharedTurn": {
            "Type": "Choice",
            "Choices": [equals("$.shared_turn.decision", "go", go),
                        polls_reached("shared_turn_poll", SHARED_TURN_POLLS, "SharedTurnNotComingInTime")],
            "Default": "WaitForSharedTurn",
        },
        **poll_loop("SharedTurn", "shared_turn_poll", SHARED_TURN_WAIT, "AwaitSharedTurn"),
        "SharedTurnNotComingInTime": gave_up(
            "TurnNotComingInTime",
            f"Other workflows of this database's VPC were still changing its shared load balancer after an hour ({SHARED_TURN_POLLS} polls {SHARED_TURN_WAIT} seconds apart). Run the workflow again once they are done.",
            failure,
        ),
    }


def failed(comment: str) -> State:
    return {"Type": "Fail", "Comment": comment, "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}


# --- provision ------------------------------------------------------------------------------------

LOAD_BALANCER_POLLS, LOAD_BALANCER_WAIT = 40, 15
TARGET_HEALTH_POLLS, TARGET_HEALTH_WAIT = 90, 10
TIDB_CLOUD_POLLS, TIDB_CLOUD_WAIT = 90, 10


def provision() -> State:
    start = fresh_counters("load_balancer_poll", "turn_poll", "tidb_cloud_poll")

    def read(comment: str, identifier: str, by_event: bool = True) -> State:
        return reader(comment, identifier, by_event, start)

    def step(comment: str, function: str, result: str, then: str, failure: str = "RollBack") -> State:
        return function_step(comment, function, result, then, failure=failure)

    states: dict[str, State] = {
        "ReadInput": {
            "Type": "Choice",
            "Comment": "Started by EventBridge (a CloudTrail event for a tag change, or for an instance or DB cluster created, restored, replicated or cloned with the tag) or by hand. A cluster's key is cluster:<identifier>, as in its ARN.",
            "Choices": [
                present("$.detail.requestParameters.resourceName", "WhichTaggedResource"),
                present("$.detail.responseElements.dBInstanceIdentifier", "ReadCreateEvent"),
                present("$.detail.responseElements.dBClusterIdentifier", "ReadClusterCreateEvent"),
                present("$.db_cluster_identifier", "ReadClusterRequest"),
            ],
            "Default": "ReadRequest",
        },
        "WhichTaggedResource": which_tagged_resource(),
        "ReadTagEvent": read("The tagged resource's ARN is arn:aws:rds:<region>:<account>:db:<identifier>.",
                             TAGGED_IDENTIFIER),
        "ReadCreateEvent": read(
            "An instance created with the tag: CreateDBInstance, a restore (from a snapshot, to a point in time) or a read replica. The new instance's identifier is in the response (a point-in-time restore names it targetDBInstanceIdentifier in the request).",
            "$.detail.responseElements.dBInstanceIdentifier"),
        "ReadRequest": read("Keep only what the workflow needs and start the load balancer poll count.",
                            "$.db_instance_identifier", by_event=False),
        "ReadClusterTagEvent": read(
            "The tagged DB cluster's ARN is arn:aws:rds:<region>:<account>:cluster:<identifier>.",
            cluster_key(TAGGED_IDENTIFIER)),
        "ReadClusterCreateEvent": read(
            "A DB cluster created with the tag: CreateDBCluster, a restore (from a snapshot, to a point in time) or a clone; the new cluster is in the response.",
            cluster_key("$.detail.responseElements.dBClusterIdentifier")),
        "ReadClusterRequest": read("Started by hand for a DB cluster: {\"db_cluster_identifier\": ...}.",
                                   cluster_key("$.db_cluster_identifier"), by_event=False),
        **turn("provision", "InspectDatabase", "ProvisioningFailed", "Provisioned", {}),
        "InspectDatabase": step(
            "Step 1: the instance must be available, MySQL-compatible, and resolve to a private IP in its VPC.",
            "InspectDatabase", "$.database", "PlanZones", failure="ReleaseTurn"),
        "PlanZones": step("Step 2: one subnet in each AZ that TiDB Cloud also uses, matched by AZ ID.",
                          "PlanZones", "$.zones", "CreateTargetGroup", failure="ReleaseTurn"),
        "CreateTargetGroup": step("Step 3: IP target group on the DB port with the DB's private IP registered.",
                                  "TargetGroup", "$.target_group", "NeedsSharedTurn"),
        **shared_turn("provision", "CreateSecurityGroups", "RollBack", {}),
        "CreateSecurityGroups": step(
            "Step 4: the NLB's security group, and the DB security group rule admitting only it.",
            "SecurityGroups", "$.security_groups", "CreateLoadBalancer"),
        "CreateLoadBalancer": step(
            "Step 5: internal NLB with its TCP listener; idempotent, so it is also the status poll.",
            "LoadBalancer", "$.load_balancer", "IsLoadBalancerActive"),
        "IsLoadBalancerActive": {
            "Type": "Choice",
            "Choices": [equals("$.load_balancer.state", "active", "HoldsSharedTurn"),
                        equals("$.load_balancer.state", "failed", "LoadBalancerFailed"),
                        polls_reached("load_balancer_poll", LOAD_BALANCER_POLLS, "LoadBalancerNotActiveInTime")],
            "Default": "WaitForLoadBalancer",
        },
        **poll_loop("LoadBalancer", "load_balancer_poll", LOAD_BALANCER_WAIT, "CreateLoadBalancer"),
        "LoadBalancerFailed": gave_up(
            "LoadBalancerFailed",
            "The network load balancer entered the 'failed' state. Check the load balancer's events in the EC2 console, then run the workflow again; everything created was removed.",
            "RollBack"),
        "LoadBalancerNotActiveInTime": gave_up(
            "LoadBalancerNotActiveInTime",
            f"The network load balancer did not become active within {LOAD_BALANCER_POLLS} polls {LOAD_BALANCER_WAIT} seconds apart (10 minutes). Everything created was removed; run the workflow again.",
            "RollBack"),
        "HoldsSharedTurn": {
            "Type": "Choice",
            "Comment": "With per-vpc sharing, create (or find) the VPC's endpoint service and TiDB Cloud connection in the VPC's turn, then give the turn back: the target's health is this database's own to wait for.",
            "Choices": [{"Not": {"Variable": "$.shared_turn.decision", "StringEquals": "go"},
                         "Next": "StartTargetHealthWait"}],
            "Default": "CreateSharedEndpointService",
        },
        "CreateSharedEndpointService": step(
            "Step 6 in the VPC's turn: the VPC's endpoint service on its load balancer (found if it exists).",
            "EndpointService", "$.endpoint_service", "StartTiDBCloudConnection"),
        "StartTiDBCloudConnection": step(
            "Step 7 in the VPC's turn: create (or find) TiDB Cloud's connection to the VPC's service; it is polled after the target's health.",
            "ConnectTiDBCloud", "$.tidb_cloud", "GiveBackSharedTurn"),
        "GiveBackSharedTurn": release("$.shared_turn.lease_key", "SharedTurnGivenBack", "$.shared_release_error",
                                      "The shared parts are in place: other databases of the VPC may go on while this one waits."),
        "SharedTurnGivenBack": {
            "Type": "Pass",
            "Comment": "So that ReleaseTurn does not release it again (if giving it back failed, ReleaseTurn tries again).",
            "Result": {"decision": "released"},
            "ResultPath": "$.shared_turn",
            "Next": "StartTargetHealthWait",
        },
        "StartTargetHealthWait": {
            "Type": "Pass",
            "Comment": "The load balancer is active; its health checks now decide whether the database target is usable.",
            "Result": {"count": 0},
            "ResultPath": "$.target_health_poll",
            "Next": "CheckTargetHealth",
        },
        "CheckTargetHealth": step(
            "Step 5, continued: the database target's health as the load balancer reports it; fails with TargetNotHealthy when the target stays unhealthy or unused.",
            "TargetHealth", "$.target_health", "IsTargetHealthy"),
        "IsTargetHealthy": {
            "Type": "Choice",
            "Choices": [equals("$.target_health.state", "healthy", "IsEndpointServiceThere"),
                        polls_reached("target_health_poll", TARGET_HEALTH_POLLS, "TargetNotHealthyInTime")],
            "Default": "WaitForTargetHealth",
        },
        **poll_loop("TargetHealth", "target_health_poll", TARGET_HEALTH_WAIT, "CheckTargetHealth",
                    "AWS often takes minutes to register a target and run its first health checks."),
        "TargetNotHealthyInTime": {
            "Type": "Pass",
            "Parameters": {
                "Error": "TargetNotHealthy",
                "Cause.$": f"States.Format('The database target {{}} was still {{}} ({{}}) after 15 minutes ({TARGET_HEALTH_POLLS} polls {TARGET_HEALTH_WAIT} seconds apart): the load balancer never finished registering it and checking its health. Check the target group in the EC2 console; everything created was removed, run the workflow again.', $.target_health.target, $.target_health.state, $.target_health.reason)",
            },
            "ResultPath": "$.error",
            "Next": "RollBack",
        },
        "IsEndpointServiceThere": {
            "Type": "Choice",
            "Comment": "Created in the VPC's turn (per-vpc sharing): go on polling TiDB Cloud's connection.",
            "Choices": [{"Variable": "$.tidb_cloud", "IsPresent": False, "Next": "CreateEndpointService"}],
            "Default": "TiDBCloudState",
        },
        "CreateEndpointService": step(
            "Step 6: endpoint service on the NLB, acceptance required, allowing only TiDB Cloud's account, notifying the stack's topic.",
            "EndpointService", "$.endpoint_service", "ConnectTiDBCloud"),
        "ConnectTiDBCloud": step(
            "Steps 7-8 when a TiDB Cloud cluster is linked: create (or find) the private link connection; idempotent, so it is also the status poll.",
            "ConnectTiDBCloud", "$.tidb_cloud", "TiDBCloudState"),
        "TiDBCloudState": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.tidb_cloud.configured", "BooleanEquals": False, "Next": "RecordOnDatabase"},
                equals("$.tidb_cloud.state", "ACTIVE", "RecordOnDatabase"),
                {"And": [{"Variable": "$.tidb_cloud.state", "StringEquals": "PENDING_ACCEPTANCE"},
                         {"Variable": "$.tidb_cloud.endpoint_id", "IsString": True}],
                 "Next": "AwaitAcceptance"},
                polls_reached("tidb_cloud_poll", TIDB_CLOUD_POLLS, "TiDBCloudNotActiveInTime"),
            ],
            "Default": "WaitForTiDBCloud",
        },
        "AwaitAcceptance": {
            "Type": "Task",
            "Comment": "Step 8: wait until the acceptor has accepted exactly TiDB Cloud's endpoint. The event announcing the wait carries the task token and also triggers the acceptor.",
            "Resource": "arn:${Partition}:states:::events:putEvents.waitForTaskToken",
            "Parameters": {"Entries": [{
                "Source": "tidb-privatelink",
                "DetailType": "TiDB Cloud endpoint connection awaited",
                "Detail": {"db_instance_identifier.$": "$.db_instance_identifier",
                           "service_id.$": "$.endpoint_service.service_id",
                           "endpoint_id.$": "$.tidb_cloud.endpoint_id", "task_token.$": "$$.Task.Token"},
            }]},
            "TimeoutSeconds": 900,
            "ResultPath": "$.acceptance",
            "Retry": [EVENTBRIDGE],
            "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "AcceptanceTimedOut"},
                      on_failure("RollBack")],
            "Next": "WaitForTiDBCloud",
        },
        "AcceptanceTimedOut": gave_up(
            "AcceptanceTimedOut",
            "TiDB Cloud's endpoint was not accepted within 15 minutes. Check the accept-connections function's logs; everything created was removed, run the workflow again.",
            "RollBack"),
        **poll_loop("TiDBCloud", "tidb_cloud_poll", TIDB_CLOUD_WAIT, "ConnectTiDBCloud"),
        "TiDBCloudNotActiveInTime": gave_up(
            "TiDBCloudNotActiveInTime",
            f"TiDB Cloud did not report the private link connection ACTIVE within 15 minutes ({TIDB_CLOUD_POLLS} polls {TIDB_CLOUD_WAIT} seconds apart). Everything created was removed; run the workflow again.",
            "RollBack"),
        "RollBack": {
            "Type": "Task",
            "Comment": "A failure after resources exist: run the deprovision workflow for this instance and wait for it, so nothing is left that costs money.",
            "Resource": "arn:${Partition}:states:::states:startExecution.sync:2",
            "Parameters": {
                "StateMachineArn": "${DeprovisionStateMachineArn}",
                "Input": {"db_instance_identifier.$": "$.db_instance_identifier",
                          "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id"},
            },
            "ResultPath": None,
            "Retry": [ROLLBACK_START],
            "Catch": [on_failure("ReleaseTurn", "$.rollback_error")],
            "Next": "ReleaseTurn",
        },
        "ProvisioningFailed": failed("End with the error that stopped provisioning, not the rollback's."),
        "RecordOnDatabase": {
            "Type": "Task",
            "Comment": "Step 9: tag the RDS instance with what serves it, so the console shows the endpoint service name beside the database.",
            "Resource": "arn:${Partition}:states:::aws-sdk:rds:addTagsToResource",
            "Parameters": {
                "ResourceName.$": "$.database.arn",
                "Tags": [{"Key": "tidb-privatelink:endpoint-service", "Value.$": "$.endpoint_service.service_name"},
                         {"Key": "tidb-privatelink:load-balancer", "Value.$": "$.load_balancer.name"},
                         {"Key": "tidb-privatelink:target-group", "Value.$": "$.target_group.name"},
                         {"Key": "tidb-privatelink:port", "Value.$": "States.Format('{}', $.load_balancer.port)"}],
            },
            "ResultPath": None,
            "Retry": [RDS_TAGGING],
            "Catch": [on_failure("ReleaseTurn", "$.record_error",
                                 "The PrivateLink path works without these tags: report, do not roll back.")],
            "Next": "ReleaseTurn",
        },
        "Provisioned": {
            "Type": "Pass",
            "Comment": "What the user gives TiDB Cloud, and what was created.",
            "Parameters": {
                "db_instance_identifier.$": "$.db_instance_identifier",
                "endpoint_service_name.$": "$.endpoint_service.service_name",
                "endpoint_service_id.$": "$.endpoint_service.service_id",
                "load_balancer_arn.$": "$.load_balancer.arn",
                "port.$": "$.load_balancer.port",
                "target_group_arn.$": "$.target_group.arn",
                "nlb_security_group_id.$": "$.security_groups.nlb_security_group_id",
                "tidb_cloud_connection_id.$": "$.tidb_cloud.connection_id",
                "subnets.$": "$.zones.subnets",
                "target_health.$": "$.target_health",
            },
            "End": True,
        },
    }
    return {
        "Comment": "Expose an RDS instance or DB cluster to TiDB Cloud over AWS PrivateLink: target group, security groups, internal NLB, endpoint service.",
        "StartAt": "ReadInput",
        "TimeoutSeconds": 14400,
        "States": states,
    }


# --- deprovision ----------------------------------------------------------------------------------

# A teardown step fails with TeardownPending while what it removes is still in use or still being
# deleted (src/teardown/); it is polled again this often, this many times.
TEARDOWN_POLLS, TEARDOWN_WAIT = 20, 30
# With per-vpc sharing the turn names the VPC whose shared parts the teardown may remove.
DATABASE_KEY = {"db_instance_identifier.$": "$.db_instance_identifier", "vpc_id.$": "$.turn.vpc_id"}


def teardown_step(subject: str, comment: str, result: str, then: str, pending: str) -> State:
    """Remove<subject>: the step's removal goes to $.removed.<result>; TeardownPending to the poll
    whose Choice is `pending`."""
    return function_step(
        comment, f"Remove{subject}", f"$.removed.{result}", then, failure="ReleaseTurn", parameters=DATABASE_KEY,
        catch=({"ErrorEquals": ["TeardownPending"], "ResultPath": "$.pending", "Next": pending},),
    )


def teardown_poll(subject: str, comment: str, result: str, then: str) -> dict[str, State]:
    """A teardown step polled until it no longer fails with TeardownPending, at most TEARDOWN_POLLS
    times: the step, the Choice that gives up, the Wait and the count."""
    counter = f"{result}_poll"
    return {
        f"Remove{subject}": teardown_step(subject, comment, result, then, f"{subject}Pending"),
        f"{subject}Pending": {
            "Type": "Choice",
            "Choices": [polls_reached(counter, TEARDOWN_POLLS, "TeardownStillPending")],
            "Default": f"WaitFor{subject}",
        },
        **poll_loop(subject, counter, TEARDOWN_WAIT, f"Remove{subject}"),
    }


def deprovision() -> State:
    start = {
        **fresh_counters("turn_poll", "tidb_cloud_connection_poll", "endpoint_service_poll", "load_balancer_poll",
                         "target_group_poll", "security_groups_poll"),
        "removed": {},
    }

    def read(comment: str, identifier: str, by_event: bool = True) -> State:
        return reader(comment, identifier, by_event, {**start, "parent_execution_id": None})

    rollback = reader("Started by a failed provisioning to roll it back.", "$.db_instance_identifier", False,
                      {**start, "parent_execution_id.$": "$.AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"})

    states: dict[str, State] = {
        "ReadInput": {
            "Type": "Choice",
            "Comment": "Started by EventBridge (opt-in tag removed, instance or DB cluster deleted), by a failed provisioning, or by hand. A cluster's key is cluster:<identifier>, as in its ARN.",
            "Choices": [
                present("$.AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID", "ReadRollbackRequest"),
                present("$.detail.requestParameters.resourceName", "WhichTaggedResource"),
                present("$.detail.requestParameters.dBInstanceIdentifier", "ReadDeleteEvent"),
                present("$.detail.requestParameters.dBClusterIdentifier", "ReadClusterDeleteEvent"),
                present("$.db_cluster_identifier", "ReadClusterRequest"),
            ],
            "Default": "ReadRequest",
        },
        "WhichTaggedResource": which_tagged_resource(),
        "ReadTagEvent": read("The untagged resource's ARN is arn:aws:rds:<region>:<account>:db:<identifier>.",
                             TAGGED_IDENTIFIER),
        "ReadDeleteEvent": read("DeleteDBInstance.", "$.detail.requestParameters.dBInstanceIdentifier"),
        "ReadRequest": read("Started by hand: {\"db_instance_identifier\": ...}.", "$.db_instance_identifier",
                            by_event=False),
        "ReadClusterTagEvent": read(
            "The untagged DB cluster's ARN is arn:aws:rds:<region>:<account>:cluster:<identifier>.",
            cluster_key(TAGGED_IDENTIFIER)),
        "ReadClusterDeleteEvent": read("DeleteDBCluster.",
                                       cluster_key("$.detail.requestParameters.dBClusterIdentifier")),
        "ReadClusterRequest": read("Started by hand for a DB cluster: {\"db_cluster_identifier\": ...}.",
                                   cluster_key("$.db_cluster_identifier"), by_event=False),
        "ReadRollbackRequest": rollback,
        **turn("deprovision", "NeedsSharedTurn", "DeprovisioningFailed", "Deprovisioned",
               {"parent_execution_id.$": "$.parent_execution_id"}),
        # Whether the shared parts go depends on the VPC's other databases: the whole teardown runs
        # in the VPC's turn.
        **shared_turn("deprovision", "RemoveTiDBCloudConnection", "ReleaseTurn",
                      {"parent_execution_id.$": "$.parent_execution_id"}),
        "DeprovisioningFailed": failed("End with the error that stopped the teardown."),
        **teardown_poll(
            "TiDBCloudConnection",
            "TiDB Cloud first: delete its private link connection (when a cluster was linked) and wait until it is gone.",
            "tidb_cloud_connection", "RemoveEndpointService"),
        **teardown_poll(
            "EndpointService", "Reject the service's connections, delete its notifications, then the service.",
            "endpoint_service", "RemoveLoadBalancer"),
        # The load balancer's deletion is polled by its answer (`done` once it is gone); while an
        # endpoint service still holds it, it fails with TeardownPending, polled the same way.
        "RemoveLoadBalancer": teardown_step(
            "LoadBalancer", "Delete the listeners and the NLB; done once the NLB is gone.", "load_balancer",
            "IsLoadBalancerGone", "LoadBalancerPending"),
        "IsLoadBalancerGone": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.removed.load_balancer.done", "BooleanEquals": True, "Next": "RemoveSecurityGroups"},
                        polls_reached("load_balancer_poll", LOAD_BALANCER_POLLS, "LoadBalancerNotGoneInTime")],
            "Default": "WaitForLoadBalancer",
        },
        "LoadBalancerPending": {
            "Type": "Choice",
            "Choices": [polls_reached("load_balancer_poll", LOAD_BALANCER_POLLS, "TeardownStillPending")],
            "Default": "WaitForLoadBalancer",
        },
        **poll_loop("LoadBalancer", "load_balancer_poll", LOAD_BALANCER_WAIT, "RemoveLoadBalancer"),
        "LoadBalancerNotGoneInTime": gave_up(
            "LoadBalancerNotGoneInTime",
            f"The network load balancer was still there after {LOAD_BALANCER_POLLS} polls {LOAD_BALANCER_WAIT} seconds apart (10 minutes). Run the teardown again.",
            "ReleaseTurn"),
        **teardown_poll(
            "SecurityGroups",
            "Revoke the DB security group's rule for the NLB, then delete the NLB's group (a shared group keeps the rules other databases need); polled while the NLB's network interfaces drain.",
            "security_groups", "RemoveTargetGroup"),
        # Last: while anything of the database's is left, its target group tells AwaitTurn the VPC.
        **teardown_poll("TargetGroup", "Delete the target group, now that no listener uses it.",
                        "target_group", "WhichDatabaseArn"),
        "TeardownStillPending": {
            "Type": "Pass",
            "Comment": "A teardown step's polls ran out: end with its TeardownPending, which names what is still in use.",
            "Parameters": {"Error.$": "$.pending.Error", "Cause.$": "$.pending.Cause"},
            "ResultPath": "$.error",
            "Next": "ReleaseTurn",
        },
        "WhichDatabaseArn": {
            "Type": "Choice",
            "Comment": "The database's ARN, to remove the tags provisioning put on it: arn:...:db:<id>, or arn:...:cluster:<id> for a key cluster:<id>.",
            "Choices": [{"Variable": "$.db_instance_identifier", "StringMatches": "cluster:*", "Next": "ClusterArn"}],
            "Default": "InstanceArn",
        },
        "ClusterArn": {
            "Type": "Pass",
            "Parameters": {"arn.$": "States.Format('${RdsArnPrefix}{}', $.db_instance_identifier)"},
            "ResultPath": "$.forget",
            "Next": "ForgetOnDatabase",
        },
        "InstanceArn": {
            "Type": "Pass",
            "Parameters": {"arn.$": "States.Format('${DatabaseArnPrefix}{}', $.db_instance_identifier)"},
            "ResultPath": "$.forget",
            "Next": "ForgetOnDatabase",
        },
        "ForgetOnDatabase": {
            "Type": "Task",
            "Comment": "Remove the tags provisioning put on the RDS instance or DB cluster, if it still exists.",
            "Resource": "arn:${Partition}:states:::aws-sdk:rds:removeTagsFromResource",
            "Parameters": {
                "ResourceName.$": "$.forget.arn",
                "TagKeys": ["tidb-privatelink:endpoint-service", "tidb-privatelink:load-balancer",
                            "tidb-privatelink:target-group", "tidb-privatelink:port"],
            },
            "ResultPath": None,
            "Retry": [RDS_UNTAGGING],
            "Catch": [on_failure("ReleaseTurn", "$.forget_error",
                                 "The instance is gone (or its tags are): nothing to forget.")],
            "Next": "ReleaseTurn",
        },
        "Deprovisioned": {
            "Type": "Pass",
            "Parameters": {"db_instance_identifier.$": "$.db_instance_identifier", "removed.$": "$.removed"},
            "End": True,
        },
    }
    return {
        "Comment": "Remove everything the stack created for an RDS instance or DB cluster, in an order AWS accepts. Every step is idempotent and tolerates resources already gone.",
        "StartAt": "ReadInput",
        "TimeoutSeconds": 14400,
        "States": states,
    }


MACHINES = {"provision": provision, "deprovision": deprovision}


def definitions(root: Path) -> dict[Path, str]:
    return {root / "statemachine" / f"{name}.asl.json": json.dumps(build(), indent=2) + "\n"
            for name, build in MACHINES.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a checked-in definition differs from what this writes")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project folder (default: this script's)")
    args = parser.parse_args(argv)
    stale = []
    for path, text in definitions(args.root).items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(args.root))
        else:
            path.write_text(text)
    for path in stale:
        print(f"{path} is not what scripts/statemachines.py writes: run it and commit the result", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
