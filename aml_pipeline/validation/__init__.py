"""Plain-Python validators for AML alert scores (no Dagster).

Tier 1 integrity (0.2), Tier 2 pattern traps (0 to 0.3), Tier 3 ground truth (0 to 0.5),
``validate_day`` for all three, and an A/B comparison of two models with a report.
"""

from aml_pipeline.validation.comparison import compare_models, paired_bootstrap
from aml_pipeline.validation.report import write_comparison_report
from aml_pipeline.validation.tier1_validator import Tier1Validator
from aml_pipeline.validation.tier2_validator import Tier2Validator
from aml_pipeline.validation.tier3_validator import Tier3Validator
from aml_pipeline.validation.validator_utils import (
    PatternTrapsError,
    load_pattern_traps,
    parse_pattern_traps,
    to_jsonable,
    total_score,
    validate_day,
)

__all__ = [
    "PatternTrapsError",
    "Tier1Validator",
    "Tier2Validator",
    "Tier3Validator",
    "compare_models",
    "load_pattern_traps",
    "paired_bootstrap",
    "parse_pattern_traps",
    "to_jsonable",
    "total_score",
    "validate_day",
    "write_comparison_report",
]
