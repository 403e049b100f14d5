"""Writing batch files: deterministic Parquet bytes and the upstream META.json."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aml_pipeline.contract.schema import SCHEMA_VERSION, batch_id


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def list_column(matrix: np.ndarray) -> pd.Series:
    """An Arrow-backed column of int64 lists, one per row of ``matrix`` (no Python lists)."""
    rows, width = matrix.shape
    offsets = pa.array(np.arange(0, (rows + 1) * width, width, dtype=np.int32))
    values = pa.array(np.ascontiguousarray(matrix, dtype=np.int64).ravel())
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.ListArray.from_arrays(offsets, values)))


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """Serialize ``df`` to Parquet bytes; the same frame always gives the same bytes.

    No pandas metadata is stored: like upstream's exports, the files are plain Parquet.
    """
    buf = io.BytesIO()
    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def build_meta(
    network: str,
    processing_date: str,
    window_days: int,
    files: Mapping[str, bytes],
    counts: Mapping[str, int],
    generated_at: str,
) -> bytes:
    """META.json exactly as upstream writes it, over ``files`` (name -> bytes)."""
    meta = {
        "schema_version": SCHEMA_VERSION,
        "batch_id": batch_id(network, processing_date, window_days),
        "network": network,
        "processing_date": processing_date,
        "window_days": window_days,
        "generated_at": generated_at,
        "counts": dict(sorted(counts.items())),
        "sha256": {name: sha256_hex(data) for name, data in sorted(files.items())},
    }
    return (json.dumps(meta, indent=2) + "\n").encode()
