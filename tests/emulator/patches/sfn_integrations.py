"""Step Functions' optimized ``states:startExecution`` integration (``.sync``, ``.sync:2``).

AWS: a Task with ``Resource: arn:aws:states:::states:startExecution.sync:2`` and
``Parameters: {"StateMachineArn": ..., "Input": {...}, "Name": ...}`` starts an
execution of the other state machine with the state machine's role, waits for
it, and succeeds with its DescribeExecution output in PascalCase
(``ExecutionArn``, ``Status``, ``Input``/``Output`` as JSON for ``sync:2``, ...)
or fails with ``States.TaskFailed``. ``startExecution`` without a suffix
answers ``{"ExecutionArn", "StartDate"}``.

Stock moto 5.2.5: its interpreter (LocalStack's, with the request/response
normalisation left out) hands the ASL's PascalCase names straight to boto3,
whose Step Functions API spells them ``stateMachineArn``/``input``/``name``: the
task fails at once with ``States.Runtime`` and cause ``'StateMachineArn'`` (or
``'Input'``), and nothing is started. Its sync resolvers also read
``ExecutionArn`` from the raw (``executionArn``) answer.

Here, for the ``states`` integration only: parameters are renamed to the boto3
input shape's member names (matched case-insensitively through snake case,
nested structures and lists included), and the answers (StartExecution, and
DescribeExecution inside the ``.sync``/``.sync:2`` resolvers) are renamed back
to PascalCase, as LocalStack's interpreter (moto's upstream) does, dates as
epoch milliseconds (as in AWS's examples; moto's DescribeExecution could not
serialise the parent's output otherwise). Other
integrations (Lambda, ``aws-sdk:*``, ``events:putEvents``) are unchanged.
StartExecution without a ``name`` (API or task) names the execution with a
UUID, as AWS does; moto's interpreter backend named it ``None``, so the second
unnamed start of a state machine failed with ``ExecutionAlreadyExists``.
A Task whose Lambda invocation fails in the Lambda service, not in the function, fails with
``Lambda.<the service's error>`` as AWS reports it (Step Functions developer guide, "Handle Lambda
service exceptions": ``Lambda.ServiceException``, ``Lambda.TooManyRequestsException``, ...; an
error the Invoke API does not model, such as the common ``ServiceUnavailable``, is the Java SDK's
generic ``Lambda.AWSLambdaException``), and a
call that got no answer (the connection closed or timed out) with ``Lambda.SdkClientException``;
moto's interpreter named the first ``Exception`` and the second ``States.TaskFailed``, which no
Retry written for AWS matches. The same for the optimized ``events:putEvents`` integration: a
call EventBridge refused fails ``EventBridge.EventBridgeException`` and one left unanswered
``EventBridge.SdkClientException``, the names of the AWS SDK for Java's service and client
exceptions that Step Functions reports (moto's interpreter: ``States.Runtime`` for both, which no
Retry or Catch but ``States.ALL`` matches).
Fidelity: the child's ``AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID`` is kept in
its input as given (AWS also links parent and child in the console; not
emulated).
"""

from __future__ import annotations

import datetime
import functools
from typing import Any, Callable

from ._common import wrap


@functools.lru_cache(maxsize=None)
def _operation(service: str, action: str) -> Any:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    from botocore import xform_name

    for name in model.operation_names:
        if xform_name(name) == action:
            return model.operation_model(name)
    return None


def _snake(name: str) -> str:
    from moto.stepfunctions.parser.utils import camel_to_snake_case

    return camel_to_snake_case(name)


def _to_boto(value: Any, shape: Any) -> Any:
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    kind = getattr(shape, "type_name", None)
    if kind == "structure" and isinstance(value, dict):
        members = {_snake(key): (key, member) for key, member in shape.members.items()}
        for key in list(value):
            bound = members.get(_snake(key))
            if bound is not None:
                value[bound[0]] = _to_boto(value.pop(key), bound[1])
        return value
    if kind == "list" and isinstance(value, list):
        return [_to_boto(item, shape.member) for item in value]
    if kind == "string" and not isinstance(value, str):
        return to_json_str(value, separators=(",", ":"))
    return value


def _pascal(name: str) -> str:
    from moto.stepfunctions.parser.utils import snake_to_camel_case

    return snake_to_camel_case(_snake(name))


def _from_boto(value: Any, shape: Any) -> Any:
    kind = getattr(shape, "type_name", None)
    if kind == "structure" and isinstance(value, dict):
        for key in list(value):
            member = shape.members.get(key)
            if member is not None:
                value[_pascal(key)] = _from_boto(value.pop(key), member)
        return value
    if kind == "list" and isinstance(value, list):
        return [_from_boto(item, shape.member) for item in value]
    if kind == "timestamp" and isinstance(value, datetime.datetime):
        # Task outputs carry dates as epoch milliseconds (AWS's startExecution.sync examples).
        return int(value.timestamp() * 1000)
    return value


# The errors the Lambda Invoke API reference lists (its "Errors" section).
INVOKE_ERRORS = {
    "EC2AccessDeniedException", "EC2ThrottledException", "EC2UnexpectedException", "EFSIOException",
    "EFSMountConnectivityException", "EFSMountFailureException", "EFSMountTimeoutException",
    "ENILimitReachedException", "InvalidParameterValueException", "InvalidRequestContentException",
    "InvalidRuntimeException", "InvalidSecurityGroupIDException", "InvalidSubnetIDException",
    "InvalidZipFileException", "KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException",
    "KMSNotFoundException", "RecursiveInvocationException", "RequestTooLargeException",
    "ResourceConflictException", "ResourceNotFoundException", "ResourceNotReadyException", "ServiceException",
    "SnapStartException", "SnapStartNotReadyException", "SnapStartTimeoutException",
    "SubnetIPAddressLimitReachedException", "TooManyRequestsException", "UnsupportedMediaTypeException",
}


def service_error(service: str, ex: Exception, refused: Callable[[str], str]) -> tuple[str, str] | None:
    """(error, cause) of an integration's call that ``service`` refused (its error named by
    ``refused`` from the service's error code) or left unanswered; None for any other failure."""
    from botocore.exceptions import ClientError, HTTPClientError

    if isinstance(ex, ClientError):
        error = ex.response["Error"]
        return f"{service}.{refused(error.get('Code', ''))}", f"{error.get('Message', '')} (Service: {service}, " \
                                                              f"Error Code: {error.get('Code')})"
    if isinstance(ex, HTTPClientError):
        return f"{service}.SdkClientException", f"Unable to execute HTTP request: {ex}"
    return None


def failure(env: Any, error: str, event_type: Any, details: Any) -> Any:
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent

    return FailureEvent(env=env, error_name=CustomErrorName(error), event_type=event_type,
                        event_details=details)


def apply() -> None:
    import uuid

    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    @wrap(StepFunctionsParserBackend, "start_execution")
    def start_execution(original, self, state_machine_arn, name=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        # AWS names an execution started without a name with a UUID; moto's interpreter
        # backend named it "None" (so a second unnamed start failed ExecutionAlreadyExists).
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *args, **kwargs)

    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )
    from moto.stepfunctions.parser.api import (
        HistoryEventType,
        LambdaFunctionFailedEventDetails,
        TaskFailedEventDetails,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_events import (
        StateTaskServiceEvents,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    @wrap(StateTaskLambda, "_from_error")
    def _from_error(original, self, env, ex):  # type: ignore[no-untyped-def]
        named = service_error("Lambda", ex, lambda code: code if code in INVOKE_ERRORS else "AWSLambdaException")
        if named is None:
            return original(self, env, ex)
        error, cause = named
        return failure(env, error, HistoryEventType.LambdaFunctionFailed, EventDetails(
            lambdaFunctionFailedEventDetails=LambdaFunctionFailedEventDetails(error=error, cause=cause)))

    @wrap(StateTaskServiceEvents, "_from_error")
    def _events_from_error(original, self, env, ex):  # type: ignore[no-untyped-def]
        # The Java SDK's EventBridgeException for every refusal (PutEvents models no error of its own
        # that the emulator answers).
        named = service_error("EventBridge", ex, lambda code: "EventBridgeException")
        if named is None:
            return original(self, env, ex)
        error, cause = named
        return failure(env, error, HistoryEventType.TaskFailed, EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
            resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type(), error=error, cause=cause)))

    @wrap(StateTaskServiceSfn, "_normalise_parameters")
    def _normalise_parameters(original, self, parameters, boto_service_name=None,  # type: ignore[no-untyped-def]
                              service_action_name=None):
        original(self, parameters, boto_service_name=boto_service_name, service_action_name=service_action_name)
        operation = _operation("stepfunctions", self._get_boto_service_action(service_action_name))
        if operation is not None and operation.input_shape is not None:
            _to_boto(parameters, operation.input_shape)

    @wrap(StateTaskServiceSfn, "_normalise_response")
    def _normalise_response(original, self, response, boto_service_name=None,  # type: ignore[no-untyped-def]
                            service_action_name=None):
        original(self, response, boto_service_name=boto_service_name, service_action_name=service_action_name)
        operation = _operation("stepfunctions", self._get_boto_service_action(service_action_name))
        if operation is not None and operation.output_shape is not None:
            _from_boto(response, operation.output_shape)
