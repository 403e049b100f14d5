"""Where and how the record is kept: the object storage interface, the path layout and
the DuckDB/Parquet table helpers."""
