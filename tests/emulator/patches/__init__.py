"""The project's extension of moto 5.2.5: one module per AWS area.

``apply_all()`` monkeypatches moto in place; call it once, before serving.
Each module's docstring says what AWS does, what stock moto does, and what the
patch changes; tests/emulator/README.md collects them.
"""

from __future__ import annotations

_applied = False


def apply_all() -> None:
    global _applied
    if _applied:
        return
    from . import ec2, elbv2, elbv2_health, rds, vpce_connections, vpce_notifications, vpce_services
    from . import events_targets, faults, iam_enforcement, iam_evaluation, lambda_forward, rds_events
    from . import quotas, sfn_events, sfn_integrations, sfn_waits, throttling

    ec2.apply()
    rds.apply()
    elbv2.apply()
    elbv2_health.apply()
    vpce_services.apply()
    vpce_notifications.apply()
    vpce_connections.apply()
    lambda_forward.apply()
    events_targets.apply()
    rds_events.apply()
    iam_enforcement.apply()
    iam_evaluation.apply()
    sfn_integrations.apply()
    sfn_events.apply()
    sfn_waits.apply()
    faults.apply()
    throttling.apply()
    quotas.apply()
    _applied = True
