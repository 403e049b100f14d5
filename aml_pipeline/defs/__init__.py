"""Everything Dagster: partitions, resources, the IO manager, assets by domain, checks,
automation, jobs, run orchestration and the one ``Definitions`` object. Nothing outside
this package imports ``dagster``."""
