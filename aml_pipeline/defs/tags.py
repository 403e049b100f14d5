"""The run tags the pipeline reads and sets: a ranged run's days, its stage, the code
location its runs are listed under."""

from __future__ import annotations

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
#: The tag that says which stage of the pipeline a run is (filter runs by it in the UI).
STAGE_TAG = "aml/stage"
#: The code location the project's definitions load as (workspace.yaml, pyproject's dg
#: project, deploy/): the UI lists a job's runs by their repository label tag, which a run
#: the command line executes in process does not get by itself.
CODE_LOCATION = "aml_pipeline"
