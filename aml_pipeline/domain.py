"""Facts of the AML domain that the simulator and the detectors share."""

#: The cash reporting threshold that structuring stays just below (USD).
REPORTING_THRESHOLD_USD = 10_000.0
#: Amounts from this share of the threshold up to it count as "just below".
NEAR_THRESHOLD_SHARE = 0.85
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
