"""Step Functions' "Step Functions Execution Status Change" events on the default event bus.

AWS (Step Functions developer guide, "Automating Step Functions event delivery with
EventBridge"; EventBridge events reference, "AWS Step Functions events"): every status change of
a Standard workflow's execution (``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT``,
``ABORTED``) is sent to the account's default bus, best effort, with ``source: aws.states``,
``resources: [executionArn]`` and a ``detail`` of ``executionArn``, ``stateMachineArn``, ``name``,
``status``, ``startDate``/``stopDate`` (epoch milliseconds, ``stopDate`` null while running),
``input`` and ``output`` as JSON text (``output`` null unless it succeeded) with
``inputDetails``/``outputDetails`` ``{"included": true}``, and ``error``/``cause`` (null unless
it failed). Express workflows send none.

Stock moto 5.2.5 sends no such events. Here the interpreter's execution start and its end
(``terminated``) each put one, with the shape above. Fidelity: AWS leaves ``input``/``output`` out
(``included: false``) when they exceed the event size limit; not emulated (the product's stay far
below it).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ._common import wrap

log = logging.getLogger("emulator")


def _millis(date: Any) -> int | None:
    return int(date.timestamp() * 1000) if date is not None else None


def status_change_detail(execution: Any, status: str) -> dict[str, Any]:
    succeeded = status == "SUCCEEDED"
    return {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine.arn,
        "name": execution.name,
        "status": status,
        "startDate": _millis(execution.start_date),
        "stopDate": _millis(execution.stop_date),
        "input": json.dumps(execution.input_data, separators=(",", ":")),
        "output": json.dumps(execution.output, separators=(",", ":")) if succeeded else None,
        "inputDetails": {"included": True},
        "outputDetails": {"included": True} if succeeded else None,
        "error": execution.error,
        "cause": execution.cause,
    }


def _put(execution: Any, status: str) -> None:
    from moto.events.models import events_backends

    if str(getattr(execution.sm_type, "value", execution.sm_type)) != "STANDARD":
        return
    try:
        events_backends[execution.account_id][execution.region_name].put_events([{
            "Source": "aws.states", "DetailType": "Step Functions Execution Status Change",
            "Detail": json.dumps(status_change_detail(execution, status), default=str), "Resources": [execution.exec_arn],
        }])
    except Exception:  # best effort, as in AWS: an execution never fails for its event
        log.exception("sfn events: delivering the status change of %s failed", execution.exec_arn)


def apply() -> None:
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    @wrap(Execution, "start")
    def start(original, self):  # type: ignore[no-untyped-def]
        # Before the interpreter's thread starts, so that RUNNING always comes first.
        _put(self, "RUNNING")
        return original(self)

    @wrap(BaseExecutionWorkerCommunication, "terminated")
    def terminated(original, self):  # type: ignore[no-untyped-def]
        result = original(self)
        _put(self.execution, self.execution.exec_status.value)
        return result
