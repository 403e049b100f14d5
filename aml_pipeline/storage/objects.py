"""The one storage layer every file access of the pipeline goes through.

Keys are POSIX-style relative paths (``input/ethereum/2025-01-01/alerts.parquet``).
``LocalStorage`` keeps them under a root directory; an object-store implementation
only has to provide the same methods.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Protocol


class StorageKeyError(ValueError):
    """A storage key that is absolute or escapes the storage root."""


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``StorageKeyError``."""
    if not key or "\\" in key or any(p in ("..", ".", "") for p in key.split("/")):
        raise StorageKeyError(f"unsafe storage key: {key!r}")
    return key


class Storage(Protocol):
    """What the pipeline needs from a place that holds files."""

    def exists(self, key: str) -> bool: ...

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def list_dir(self, key: str = "") -> list[str]: ...

    def delete(self, key: str) -> None: ...

    def local_path(self, key: str) -> Path: ...

    def writing(self, key: str) -> contextlib.AbstractContextManager[Path]: ...

    def locked(self, key: str) -> contextlib.AbstractContextManager[None]: ...

    def publish_dir(self, key: str, files: Mapping[str, bytes]) -> None: ...


class LocalStorage:
    """Files under a local root directory, every write atomic (temp file + rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def local_path(self, key: str) -> Path:
        """The local file behind ``key`` (DuckDB scans read it directly)."""
        return self.root.joinpath(*PurePosixPath(check_key(key)).parts)

    def exists(self, key: str) -> bool:
        return self.local_path(key).exists()

    def read_bytes(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def list_dir(self, key: str = "") -> list[str]:
        """Names directly below ``key`` ("" is the root), hidden entries excluded, sorted."""
        path = self.local_path(key) if key else self.root
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir() if not p.name.startswith("."))

    def delete(self, key: str) -> None:
        path = self.local_path(key)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """Yield a temp path beside ``key``; on success it atomically replaces ``key``.

        If the body raises, the temp file is removed and the previous file stays intact.
        """
        final = self.local_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        try:
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold an exclusive inter-process lock for a read-modify-write of ``key`` (a
        ``.{name}.lock`` file beside it, locked with ``flock``)."""
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writing(key) as tmp:
            tmp.write_bytes(data)

    def publish_dir(self, key: str, files: Mapping[str, bytes]) -> None:
        """Write ``files`` as the complete new content of directory ``key``.

        The files are staged (and fsynced) in a hidden sibling directory, then swapped in
        with two renames: a reader sees the old directory or the new one, never a mix,
        and for the instant between the renames none (it then fails, it never reads
        partial data). If the second rename fails the old directory is put back.
        """
        final = self.local_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        staging = final.with_name(f".{final.name}.{token}.staging")
        retired = final.with_name(f".{final.name}.{token}.retired")
        try:
            staging.mkdir()
            for name, data in files.items():
                with open(staging / check_key(name), "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            if final.exists():
                os.replace(final, retired)
            try:
                os.replace(staging, final)
            except OSError:
                if retired.exists():
                    os.replace(retired, final)
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(retired, ignore_errors=True)
