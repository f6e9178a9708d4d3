"""Declarative automation, running as soon as the code location loads (no switch to flip in the UI).

Every asset after ingest carries `AutomationCondition.eager()`; this sensor evaluates those
conditions every 30 s under the daemon. So once each region's scheduled ingest has materialised,
the dataset is rebuilt, and when it changed, the model, its evaluation and the indexes follow; an
unchanged dataset gives the same versions and publishes nothing new. Dagster's own default
automation sensor starts stopped in 1.13, which left a scheduled refresh ending at ingest.
"""

import dagster as dg

automation = dg.AutomationConditionSensorDefinition(
    "geosolver_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Rebuilds everything downstream of ingest once its inputs have new materialisations.",
)
