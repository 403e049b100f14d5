"""``serve`` (the HTTP API) and ``sql`` (the analyst's DuckDB console and its prompt)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from aml_pipeline.settings import Settings

if TYPE_CHECKING:  # imported by the commands that need them: `serve` starts without them
    import duckdb
    import pyarrow as pa


def serve(args: argparse.Namespace) -> int:
    """Serve the published results over HTTP (read-only) until interrupted."""
    from aml_pipeline.api import server
    from aml_pipeline.storage.objects import storage_at

    settings = Settings.from_env()
    print(f"serving {storage_at(settings.data_root).url('')} on http://{args.host}:{args.port} "
          f"(OpenAPI docs at /docs)", flush=True)  # fmt: skip
    server.serve(args.host, args.port, settings.data_root, settings.networks[0], settings.networks)
    return 0


def sql(args: argparse.Namespace) -> int:
    """The analyst's console: ``--query`` prints (or ``--output`` writes) a result,
    ``--catalog`` writes a DuckDB file of the views, neither opens a prompt."""
    from aml_pipeline.api import console

    settings = Settings.from_env()
    root = settings.data_root
    for target in (args.output, args.catalog):
        if target and not Path(target).resolve().parent.is_dir():
            raise SystemExit(f"{target}: its folder does not exist; create it first")
    try:
        if args.catalog:
            counts = console.write_catalog(args.catalog, root, settings.networks)
            print(f"wrote {args.catalog}: {_views(counts)}; open it with: duckdb {args.catalog}")
            if args.query is None:
                return 0
        with console.open_console(root, settings.networks) as (conn, counts):
            if args.query is not None and args.output:
                rows = console.write_result(conn, args.query, args.output, root, args.timeout)
                print(f"wrote {rows} row(s) to {args.output}")
            elif args.query is not None:
                _print_result(
                    console.run_query(
                        conn, args.query, console.PRINTED_ROWS + 1, timeout_s=args.timeout
                    )
                )
            else:
                print(f"views: {_views(counts)}. End statements with ';', quit with .quit")
                _prompt(conn, args.timeout)
    except console.QUERY_ERRORS as exc:
        raise SystemExit(str(exc)) from None
    return 0


def _views(counts: dict[str, int]) -> str:
    shown = [f"{name} ({n} files)" for name, n in counts.items() if n]
    return ", ".join(shown) or "none (nothing published yet)"


def _print_result(result: pa.Table | None) -> None:
    """A console result as a table; says when only its first rows were read."""
    from aml_pipeline.api.console import PRINTED_ROWS

    if result is None:
        return
    print(result.slice(0, PRINTED_ROWS).to_pandas().to_string(index=False))
    if result.num_rows > PRINTED_ROWS:  # one more row was read to know
        print(f"(the first {PRINTED_ROWS} rows; --output writes them all)")


def _prompt(conn: duckdb.DuckDBPyConnection, timeout_s: float) -> None:
    """Read statements until .quit or end of input; print each result or its error (a
    statement is stopped after ``timeout_s`` seconds, or by Ctrl-C)."""
    from aml_pipeline.api import console

    buffer = ""
    while True:
        try:
            line = input("sql> " if not buffer else "...> ")
        except EOFError:
            return
        if line.strip() in (".quit", ".exit") and not buffer:
            return
        buffer += line + "\n"
        if not buffer.rstrip().endswith(";"):
            continue
        try:
            _print_result(
                console.run_query(conn, buffer, console.PRINTED_ROWS + 1, timeout_s=timeout_s)
            )
        except console.QUERY_ERRORS as exc:
            print(f"error: {exc}")
        buffer = ""
