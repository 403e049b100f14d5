"""The one storage layer every file access of the pipeline goes through.

Keys are POSIX-style relative paths (``input/ethereum/2025-01-01/alerts.parquet``).
``LocalStorage`` keeps them under a root directory. What each operation needs from the
medium, and what an object store uses instead:

* ``write_bytes``/``writing``: one object replaced whole (local: temp file + rename; an
  object store's PUT is already atomic, ``writing`` uploads the finished temp file).
* ``publish_dir``: a directory replaced whole for readers (local: versions behind a
  symbolic link swapped in one rename; an object store: the files under a new prefix,
  then one small pointer object readers follow). ``resolve_dir`` gives the key of the
  version a reader should read all of a day's files from.
* ``read_path``: a local file with the object's content for DuckDB or pyarrow to scan
  (local: the file itself; an object store: a download, cached by version).
* ``free_bytes``: the space left, checked before a landing (an object store: None, no
  limit to check).
* ``locked``: a read-modify-write of one file by one writer at a time (local: ``flock``;
  an object store: a lease object created with a conditional write).
* ``each``: one call per key, concurrently where a call is a round trip (an object store)
  and in order where it is a system call (local).
* ``url``: where a key is, for logs and the UI's metadata.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Protocol, TypeVar

#: A retired version of a published directory is kept this long after it was replaced,
#: so a reader that resolved the link before the swap can finish; then it is removed.
RETIRED_GRACE_SECONDS = 60

T = TypeVar("T")
R = TypeVar("R")


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class StorageUnavailable(RuntimeError):
    """The data root cannot be used: one line naming the setting to fix."""


class StorageKeyError(ValueError):
    """A storage key that is absolute or escapes the storage root."""


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``StorageKeyError``."""
    if not key or "\\" in key or any(p in ("..", ".", "") for p in key.split("/")):
        raise StorageKeyError(f"unsafe storage key: {key!r}")
    return key


class Storage(Protocol):
    """What the pipeline needs from a place that holds files."""

    @property
    def scan_dir(self) -> Path: ...

    def url(self, key: str) -> str: ...

    def exists(self, key: str) -> bool: ...

    def read_bytes(self, key: str) -> bytes: ...

    def read_path(self, key: str) -> Path: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def list_dir(self, key: str = "") -> list[str]: ...

    def delete(self, key: str) -> None: ...

    def resolve_dir(self, key: str) -> str: ...

    def writing(self, key: str) -> contextlib.AbstractContextManager[Path]: ...

    def locked(self, key: str) -> contextlib.AbstractContextManager[None]: ...

    def publish_dir(self, key: str, files: Mapping[str, bytes]) -> None: ...

    def free_bytes(self) -> int | None: ...

    def each(self, call: Callable[[T], R], items: Iterable[T]) -> list[R]: ...


def storage_at(root: str) -> Storage:
    """The storage of a data root: ``s3://bucket/prefix`` on an object store (``S3Storage``),
    anything else a local directory."""
    if root.startswith("s3://"):
        from aml_pipeline.storage.s3 import S3Storage  # boto3 only when it is used

        return S3Storage(root)
    return LocalStorage(root)


def check_data_root(root: str) -> None:
    """Raise ``StorageUnavailable`` unless the data root ``root`` can be listed and
    written (checked on an object store, where it can be wrong in more ways than a path;
    a local root is created on first write)."""
    if root.startswith("s3://"):
        from aml_pipeline.storage.s3 import S3Storage

        S3Storage(root).check()


def _holds(folder: Path, files: Mapping[str, bytes]) -> bool:
    """Whether ``folder`` holds exactly ``files``, byte for byte."""
    if not folder.is_dir():
        return False
    names = {p.name for p in folder.iterdir()}
    return names == set(files) and all(
        (folder / name).stat().st_size == len(data) and (folder / name).read_bytes() == data
        for name, data in files.items()
    )


def _sweep(versions: Path) -> None:
    """Remove the versions in ``versions`` that no reader can be on any more; the caller
    holds the day's publication lock, so none is being staged. Every version but the
    published one was replaced at the latest when the link was last swapped (the link's
    own mtime): once that is RETIRED_GRACE_SECONDS ago, they all go (with what a publisher
    that died before its swap left)."""
    link = versions.with_name(versions.name.removeprefix(".").removesuffix(".versions"))
    try:
        current = os.readlink(link).rsplit("/", 1)[-1]
        swapped = os.lstat(link).st_mtime_ns
        names = os.listdir(versions)
    except OSError:  # not published (yet), or removed meanwhile
        return
    if swapped > time.time_ns() - RETIRED_GRACE_SECONDS * 10**9:
        return
    for name in names:
        if name != current:
            shutil.rmtree(versions / name, ignore_errors=True)


@contextlib.contextmanager
def _lock(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on the file ``path`` (created); without ``wait``, yield
    False at once when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _swap_in(final: Path, files: Mapping[str, bytes]) -> None:
    """Stage ``files`` as a new version of ``final`` and swap the link to it."""
    versions = final.with_name(f".{final.name}.versions")
    versions.mkdir(parents=True, exist_ok=True)
    now = time.time_ns()
    token = f"{now:020d}-{uuid.uuid4().hex[:8]}"
    staged = versions / token
    link = final.with_name(f".{final.name}.{token}.link")
    try:
        staged.mkdir()
        for name, data in files.items():
            with open(staged / check_key(name), "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        if final.is_dir() and not final.is_symlink():  # replaced by the new version
            os.replace(final, versions / f"{now - 1:020d}-unversioned")
        os.symlink(f"{versions.name}/{token}", link)
        os.replace(link, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    finally:
        link.unlink(missing_ok=True)


class LocalStorage:
    """Files under a local root directory, every write atomic (temp file + rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def local_path(self, key: str) -> Path:
        """The local file behind ``key`` (this implementation's own)."""
        return self.root.joinpath(*PurePosixPath(check_key(key)).parts)

    @property
    def scan_dir(self) -> Path:
        """Where every ``read_path`` lies: the root (DuckDB's sandbox allows only it)."""
        return self.root

    def url(self, key: str) -> str:
        """The file's absolute path ("": the root's)."""
        return str(self.local_path(key)) if key else str(self.root)

    def read_path(self, key: str) -> Path:
        """The file itself: DuckDB and pyarrow scan it in place."""
        path = self.local_path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        return path

    def exists(self, key: str) -> bool:
        return self.local_path(key).exists()

    def resolve_dir(self, key: str) -> str:
        """The key of the version a published directory ``key`` points to now: a reader
        that reads several files of a day resolves it once and reads them all from one
        version (``key`` itself when it is a plain directory or absent)."""
        path = self.local_path(key)
        if not path.is_symlink():
            return key
        target = os.readlink(path)  # relative, inside the day's folder
        return str(PurePosixPath(key).parent / target)

    def read_bytes(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def each(self, call: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``call`` on every item, in order (a local file is a system call away)."""
        return [call(item) for item in items]

    def list_dir(self, key: str = "") -> list[str]:
        """Names directly below ``key`` ("" is the root), hidden entries excluded, sorted."""
        path = self.local_path(key) if key else self.root
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir() if not p.name.startswith("."))

    def delete(self, key: str) -> None:
        """Remove the file or directory ``key`` (a published directory with its versions)."""
        path = self.local_path(key)
        if path.is_symlink():
            path.unlink()
            shutil.rmtree(path.with_name(f".{path.name}.versions"), ignore_errors=True)
            path.with_name(f".{path.name}.lock").unlink(missing_ok=True)
        elif path.is_dir():
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
        with _lock(path.with_name(f".{path.name}.lock")):
            yield

    def free_bytes(self) -> int:
        """Bytes free on the file system of the root (or of its nearest existing parent)."""
        path = self.root
        while not path.exists():
            path = path.parent
        return shutil.disk_usage(path).free

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writing(key) as tmp:
            tmp.write_bytes(data)

    def publish_dir(self, key: str, files: Mapping[str, bytes]) -> None:
        """Write ``files`` as the complete new content of directory ``key``, atomically for
        readers.

        ``key`` is a symbolic link to a version folder (``.{name}.versions/{token}``): the
        files are staged and fsynced in a new version, then the link is replaced in one
        rename, so a reader opening ``key/...`` gets the old day or the new one, never a
        mix and never nothing. Publications of one day take turns (``locked``). A
        replaced version is kept for RETIRED_GRACE_SECONDS after the swap that replaced it,
        so a reader that resolved the link before can finish; each publication then removes
        the expired versions of its day and of the other days in its folder that no one is
        publishing.
        A directory published before links were used is moved into the versions first
        (a reader in that one instant may miss the day, or read one file of it before and
        one after). Publishing exactly the content a versioned ``key`` holds already writes
        nothing (re-landing an unchanged batch keeps one copy); an unversioned one is
        always moved into the versions, so no reader keeps the unversioned path.
        """
        final = self.local_path(key)
        with self.locked(key):  # one publisher of a day at a time
            if not (final.is_symlink() and _holds(final, files)):
                _swap_in(final, files)
            _sweep(final.with_name(f".{final.name}.versions"))
        for folder in final.parent.glob(".*.versions"):  # other days, unless being published
            day = folder.name.removeprefix(".").removesuffix(".versions")
            with _lock(final.with_name(f".{day}.lock"), wait=False) as held:
                if held:
                    _sweep(folder)
