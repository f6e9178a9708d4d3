"""Declarative automation, running as soon as the code location loads (no switch to flip in the UI).

Every asset after ingest carries `AutomationCondition.eager()`; this sensor evaluates those
conditions every 30 s (GEOSOLVER_AUTOMATION_INTERVAL_S) under the daemon. So once each region's
scheduled ingest has materialised, the dataset is rebuilt, and when it changed, the model, its
evaluation and the indexes follow; an unchanged dataset gives the same versions and publishes
nothing new. Dagster's own default
automation sensor starts stopped in 1.13, which left a scheduled refresh ending at ingest.
"""

import os

import dagster as dg

INTERVAL_ENV = "GEOSOLVER_AUTOMATION_INTERVAL_S"  # how often the conditions are evaluated (default 30 s)

automation = dg.AutomationConditionSensorDefinition(
    "geosolver_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=int(os.environ.get(INTERVAL_ENV) or 30),
    description="Rebuilds everything downstream of ingest once its inputs have new materialisations.",
)
