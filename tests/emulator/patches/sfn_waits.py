"""How long a Step Functions ``Wait`` state waits: an emulator setting that shortens every wait.

AWS (Step Functions developer guide, "Wait workflow state") waits exactly ``Seconds``,
``SecondsPath``, or until ``Timestamp``/``TimestampPath``. Stock moto 5.2.5 does too. Here
``{"stepfunctions": {"wait_scale": F}}`` (``POST /moto-api/config``; keep
``execute_state_machine`` in the same object, moto replaces the whole section) multiplies every
wait by ``F``, a number in (0, 1]; without it (the default) a wait lasts what the definition
says. The fault matrix uses it: it judges what a run leaves, not how long it waited, and its
cells would otherwise spend most of their hours in the definitions' 10 to 30 second waits. What
AWS does not have, so nothing that judges timing runs with it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from moto.core.config import default_user_config
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

from ._common import wrap

log = logging.getLogger("emulator")

SETTING = "wait_scale"


def wait_scale() -> float:
    """The setting, or 1 (with a warning) when it is not a number in (0, 1]. Read at each wait, as
    moto keeps the section as posted (``set_config`` is wrapped by elbv2_health already)."""
    scale = (default_user_config.get("stepfunctions") or {}).get(SETTING, 1.0)  # type: ignore[attr-defined]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        log.warning("stepfunctions: ignored setting %s=%r (want a number in (0, 1])", SETTING, scale)
        return 1.0
    return float(scale)


def apply() -> None:
    @wrap(WaitFunction, "_wait_interval")
    def wait_interval(original, self, env, wait_seconds):  # type: ignore[no-untyped-def]
        scale = wait_scale()
        if scale >= 1 or wait_seconds <= 0:
            return original(self, env, wait_seconds)
        # moto's own loop counts whole seconds, which a scaled wait is not; this one waits until
        # the scaled deadline unless the execution stops (its event is set) first.
        deadline = time.monotonic() + wait_seconds * scale
        while env.is_running() and (left := deadline - time.monotonic()) > 0:
            env.program_state_event.wait(left)
