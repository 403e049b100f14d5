"""Plain-Python validators for AML alert scores (no Dagster).

Tier 1 integrity (0.2), Tier 2 pattern traps (0 to 0.3), Tier 3 ground truth (0 to 0.5),
``validate_day`` for all three, and an A/B comparison of two models with a report.
"""

from aml_pipeline.evaluation.comparison import compare_models, paired_bootstrap
from aml_pipeline.evaluation.report import write_comparison_report
from aml_pipeline.evaluation.tier1_validator import Tier1Validator
from aml_pipeline.evaluation.tier2_validator import Tier2Validator
from aml_pipeline.evaluation.tier3_validator import Tier3Validator
from aml_pipeline.evaluation.tiers import validate_day
from aml_pipeline.evaluation.validator_utils import to_jsonable, total_score

__all__ = [
    "Tier1Validator",
    "Tier2Validator",
    "Tier3Validator",
    "compare_models",
    "paired_bootstrap",
    "to_jsonable",
    "total_score",
    "validate_day",
    "write_comparison_report",
]
