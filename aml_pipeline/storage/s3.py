"""The record on an S3-compatible object store (AWS S3, SeaweedFS, MinIO ...).

``S3Storage("s3://bucket/prefix")`` keeps each key as the object ``prefix/key``. The
endpoint, region and credentials come from the standard AWS settings (``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, a profile ...), as for
any AWS tool. What replaces the local disk's renames, links and locks:

* a published directory ``key`` is its files under ``key/.v/{version}/`` and one pointer
  object ``key/.current`` naming the version: a PUT of the pointer swaps a whole day in;
  a reader resolves it once (``resolve_dir``) and reads every file from that version.
  Reading ``key/name`` directly follows the pointer too, as a symbolic link would.
* a lock (``locked``) is a lease object ``.{name}.lock`` created with a conditional write
  (``If-None-Match: *``) and renewed by its holder; a lease not renewed for
  ``LEASE_SECONDS`` (its holder died) is taken over with ``If-Match`` on its ETag, so two
  waiters never both take it.
* ``read_path`` downloads an object once per version (its ETag) into a local cache, where
  DuckDB and pyarrow scan it as they scan a local file; the cache keeps the most recently
  used copies within ``AML_S3_CACHE_MB``.
* each publication deletes the versions its folder's days retired more than the grace
  period ago, as the local disk does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from aml_pipeline.settings import Settings
from aml_pipeline.storage import objects
from aml_pipeline.storage.objects import R, StorageUnavailable, T, check_key

POINTER = ".current"
VERSIONS = ".v"
#: A lease not renewed within this time (its holder died) may be taken over; a live
#: holder renews it every third of this.
LEASE_SECONDS = 30
#: How long ``locked`` waits for a lock held by someone else before it gives up.
LOCK_WAIT_SECONDS = 900
#: A cached copy used within this time is not trimmed (a scan may be reading it).
CACHE_IN_USE_SECONDS = 600
#: Requests ``each`` has in flight at once (the client's connection pool holds as many).
CONCURRENT_REQUESTS = 16
_MISSING = {"404", "NoSuchKey", "NotFound"}
_CONFLICT = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` as (bucket, prefix without slashes at either end)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, prefix.strip("/")


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


#: The AWS settings a client is made from: a change to any of them makes a new client.
_CLIENT_SETTINGS = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)


def client(attempts: int = 4) -> Any:
    """An S3 client from the standard AWS settings; path-style addressing when an
    endpoint is set (S3-compatible servers), bounded timeouts and retries.

    One client per process and settings (making one costs ~90 ms; boto3's clients are
    thread-safe); a forked child makes its own."""
    return _client(attempts, tuple(os.environ.get(name) for name in _CLIENT_SETTINGS))


@functools.lru_cache(maxsize=8)
def _client(attempts: int, settings: tuple[str | None, ...]) -> Any:
    config = Config(
        s3={"addressing_style": "path" if _endpoint() else "auto"},
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=CONCURRENT_REQUESTS,
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.session.Session().client("s3", region_name=region, config=config)


os.register_at_fork(after_in_child=_client.cache_clear)


class S3Storage:
    """Keys as objects under ``s3://bucket/prefix/``; see the module's docstring."""

    def __init__(
        self,
        url: str,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_bytes: int | None = None,
    ) -> None:
        """The record at ``url``; downloaded copies under ``cache_dir`` (default: the
        temp dir's ``aml-pipeline-s3-cache``), at most ``cache_bytes`` of them (default:
        ``AML_S3_CACHE_MB``)."""
        self.bucket, self.prefix = split_url(url)
        default = Path(tempfile.gettempdir()) / "aml-pipeline-s3-cache"
        self.cache = Path(cache_dir or default) / self.bucket / (self.prefix or "_")
        self._cache_bytes = cache_bytes
        self._kept_since_trim = 0

    def __repr__(self) -> str:
        return f"S3Storage({self.url('')!r})"

    @property
    def scan_dir(self) -> Path:
        """Where every ``read_path`` lies: the local cache (DuckDB's sandbox allows only it)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        return self.cache

    @property
    def s3(self) -> Any:
        """This process's S3 client for the current AWS settings (``client``)."""
        return client()

    def check(self) -> None:
        """Raise ``StorageUnavailable`` with one line naming the setting to fix unless the
        bucket can be listed and written: endpoint unreachable, credentials refused,
        no such bucket, or no permission to write."""
        where = f"AML_DATA_ROOT={self.url('')}"
        endpoint = _endpoint() or "AWS's default endpoint"
        probe = self._object(f".aml-write-check-{uuid.uuid4().hex}")
        s3 = client(attempts=1)
        try:
            s3.list_objects_v2(Bucket=self.bucket, Prefix=self._object(""), MaxKeys=1)
            s3.put_object(Bucket=self.bucket, Key=probe, Body=b"")
            s3.delete_object(Bucket=self.bucket, Key=probe)
        except EndpointConnectionError as error:
            raise StorageUnavailable(
                f"{where}: cannot reach the S3 endpoint {endpoint} (AWS_ENDPOINT_URL): {error}"
            ) from None
        except NoCredentialsError:
            raise StorageUnavailable(
                f"{where}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE)"
            ) from None
        except ClientError as error:
            code, operation = _code(error), error.operation_name
            if code in ("NoSuchBucket", "404"):
                problem = f"no bucket {self.bucket!r} at {endpoint} (create it, or fix the URL)"
            elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"):
                problem = (
                    f"the S3 credentials are refused ({code}): check AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY"
                )
            elif operation == "PutObject":
                problem = f"the credentials cannot write to the bucket ({code}): grant PutObject"
            else:
                problem = f"{operation} refused ({code}): {error}"
            raise StorageUnavailable(f"{where}: {problem}") from None

    # -- keys --

    def _object(self, key: str) -> str:
        key = check_key(key) if key else ""
        return "/".join(p for p in (self.prefix, key) if p)

    def url(self, key: str) -> str:
        """``s3://bucket/prefix/key``."""
        return f"s3://{self.bucket}/{self._object(key)}".rstrip("/")

    # -- reading --

    def _get(self, name: str, **conditions: str) -> dict | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=name, **conditions)
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise

    def _head(self, name: str) -> dict | None:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise

    def _version(self, key: str) -> str | None:
        """The version the published directory ``key`` points to, if it is one."""
        found = self._get(self._object(f"{key}/{POINTER}"))
        return json.loads(found["Body"].read())["version"] if found else None

    def _follow(self, key: str, fetch: Callable[[str], dict | None]) -> tuple[str, dict] | None:
        """``fetch`` (a HEAD or a GET) of the object holding ``key``, and its name: the
        object itself, or, inside a published directory, the file of the version its
        pointer names (as a symbolic link to a version would)."""
        name = self._object(key)
        found = fetch(name)
        if found is not None:
            return name, found
        parent = str(PurePosixPath(key).parent)
        version = self._version(parent) if parent != "." else None
        if version is None:
            return None
        inside = self._object(f"{parent}/{VERSIONS}/{version}/{PurePosixPath(key).name}")
        found = fetch(inside)
        return (inside, found) if found is not None else None

    def exists(self, key: str) -> bool:
        """Whether ``key`` is an object (followed through a published directory's
        pointer) or a non-empty directory."""
        if self._follow(key, self._head) is not None:
            return True
        listed = self.s3.list_objects_v2(
            Bucket=self.bucket, Prefix=self._object(key) + "/", MaxKeys=1
        )
        return bool(listed.get("KeyCount"))

    def read_bytes(self, key: str) -> bytes:
        found = self._follow(key, self._get)
        if found is None:
            raise FileNotFoundError(f"{self.url(key)}: no such object")
        return found[1]["Body"].read()

    def _cached(self, name: str, etag: str) -> Path:
        """Where the copy of object ``name`` at version ``etag`` is kept."""
        folder = self.cache / hashlib.sha256(name.encode()).hexdigest()[:32]
        return folder / f"{etag.strip(chr(34))}{PurePosixPath(name).suffix}"

    def _keep(self, copy: Path, fill: Callable[[Path], None]) -> Path:
        """Make ``copy`` (written by ``fill`` into a temp file, renamed), drop older ones;
        trim the cache after every tenth of its limit kept (``_trim``)."""
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.parent / f".{uuid.uuid4().hex}.tmp"
        try:
            fill(tmp)
            os.replace(tmp, copy)
        finally:
            tmp.unlink(missing_ok=True)
        for older in copy.parent.iterdir():
            if older != copy and not older.name.startswith("."):
                older.unlink(missing_ok=True)
        self._kept_since_trim += copy.stat().st_size
        if self._kept_since_trim > self.cache_bytes // 10:
            self._trim()
        return copy

    @property
    def cache_bytes(self) -> int:
        """The most the cache holds (``AML_S3_CACHE_MB`` unless given)."""
        if self._cache_bytes is None:
            self._cache_bytes = Settings.from_env().s3_cache_mb << 20
        return self._cache_bytes

    def _trim(self) -> None:
        """Remove the least recently used copies (by mtime: a copy read again is touched)
        until the cache holds at most 90 % of ``cache_bytes``; a copy used in the last
        CACHE_IN_USE_SECONDS stays, as a scan may be reading it."""
        self._kept_since_trim = 0
        copies = []
        for copy in self.cache.glob("*/[!.]*"):
            with contextlib.suppress(FileNotFoundError):  # another process trimmed it
                stat = copy.stat()
                copies.append((stat.st_mtime, stat.st_size, copy))
        total, now = sum(size for _, size, _ in copies), time.time()
        for used, size, copy in sorted(copies):
            if total <= self.cache_bytes * 0.9 or now - used < CACHE_IN_USE_SECONDS:
                break
            copy.unlink(missing_ok=True)
            total -= size

    def read_path(self, key: str) -> Path:
        """A local copy of ``key`` to scan, downloaded once per version of the object
        (its ETag) into the cache (what this process wrote is there already); earlier
        versions' copies are removed."""
        located = self._follow(key, self._head)
        if located is None:
            raise FileNotFoundError(f"{self.url(key)}: no such object")
        name, head = located
        copy = self._cached(name, head["ETag"])
        with contextlib.suppress(FileNotFoundError):  # else trimmed meanwhile: download it
            if time.time() - copy.stat().st_mtime > CACHE_IN_USE_SECONDS / 2:
                os.utime(copy)  # used now: the last to be trimmed
            return copy
        found = self._get(name, IfMatch=head["ETag"])
        if found is None:
            raise FileNotFoundError(f"{self.url(key)}: no such object")

        def download(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                for chunk in found["Body"].iter_chunks(1 << 20):
                    handle.write(chunk)

        return self._keep(copy, download)

    def _names(self, key: str) -> set[str]:
        """Every name directly below ``key``, hidden ones included."""
        base = self._object(key)
        prefix = base + "/" if base else ""
        names: set[str] = set()
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            folders = page.get("CommonPrefixes", [])
            names.update(p["Prefix"][len(prefix) :].rstrip("/") for p in folders)
            names.update(o["Key"][len(prefix) :] for o in page.get("Contents", []))
        return names

    def list_dir(self, key: str = "") -> list[str]:
        """Names directly below ``key`` ("" is the root; a published directory, whose
        listing shows its pointer: its current version), hidden entries excluded, sorted."""
        names = self._names(key)
        if key and POINTER in names:
            names = self._names(self.resolve_dir(key))
        return sorted(n for n in names if n and not n.startswith("."))

    def resolve_dir(self, key: str) -> str:
        """The key of the version the published directory ``key`` points to now (``key``
        itself when it is a plain directory or absent)."""
        version = self._version(key)
        return f"{key}/{VERSIONS}/{version}" if version else key

    def each(self, call: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``call`` on every item, CONCURRENT_REQUESTS at a time (each is a round trip),
        results in the items' order; the first error is raised."""
        items = list(items)
        if len(items) < 2:
            return [call(item) for item in items]
        with ThreadPoolExecutor(min(CONCURRENT_REQUESTS, len(items))) as pool:
            return list(pool.map(call, items))

    def free_bytes(self) -> None:
        """An object store has no free space to check before a landing."""
        return None

    # -- writing --

    def write_bytes(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self._object(key), Body=data)

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """Yield a local temp path; on success its content becomes ``key`` in one PUT (and
        the cached copy of that version, so reading it back downloads nothing). If the
        body raises, nothing is written and the previous object stays."""
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = self.cache / f".{uuid.uuid4().hex}.tmp"
        try:
            yield tmp
            name = self._object(key)
            with open(tmp, "rb") as handle:
                etag = self.s3.put_object(Bucket=self.bucket, Key=name, Body=handle)["ETag"]
            self._keep(self._cached(name, etag), lambda copy: os.replace(tmp, copy))
        finally:
            tmp.unlink(missing_ok=True)

    def _objects_under(self, prefix: str) -> Iterator[dict]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            yield from page.get("Contents", [])

    def _delete_objects(self, names: list[str]) -> None:
        for start in range(0, len(names), 1000):
            batch = [{"Key": n} for n in names[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def delete(self, key: str) -> None:
        """Remove the object ``key`` and everything under ``key/`` (a published directory
        with its versions and pointer)."""
        name = self._object(key)
        under = [o["Key"] for o in self._objects_under(name + "/")]
        self._delete_objects([name, *under])

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold the lease object ``.{name}.lock`` beside ``key`` for a read-modify-write
        (``_lease``), waiting up to LOCK_WAIT_SECONDS for another holder."""
        with self._lease(key, wait=True):
            yield

    @contextlib.contextmanager
    def _lease(self, key: str, wait: bool) -> Iterator[bool]:
        """Hold the lease on ``key``; yield whether it is held (without ``wait``: False at
        once when someone else holds it).

        The lease object is created with ``If-None-Match: *`` (one holder), renewed every
        LEASE_SECONDS / 3 with ``If-Match`` on its ETag while held, and deleted on release.
        A lease not renewed for LEASE_SECONDS (its holder died) is taken over with
        ``If-Match``, so two waiters never both take it."""
        path = PurePosixPath(self._object(key))
        lock = str(path.with_name(f".{path.name}.lock"))
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        deadline, pause = time.monotonic() + LOCK_WAIT_SECONDS, 0.02
        while (etag := self._take(lock, owner)) is None:
            if not wait:
                yield False
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url(key)}: locked by another writer for too long")
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        released = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(lock, owner, etag, released), daemon=True
        )
        renewer.start()
        try:
            yield True
        finally:
            released.set()
            renewer.join()
            held = self._get(lock)
            if held is not None and json.loads(held["Body"].read()).get("owner") == owner:
                self.s3.delete_object(Bucket=self.bucket, Key=lock)

    @staticmethod
    def _lease_body(owner: str) -> bytes:
        return json.dumps({"owner": owner, "expires": time.time() + LEASE_SECONDS}).encode()

    def _renew(self, lock: str, owner: str, etag: str, released: threading.Event) -> None:
        """Push the lease's expiry on until ``released`` (stops if it was taken over)."""
        while not released.wait(LEASE_SECONDS / 3):
            try:
                etag = self.s3.put_object(
                    Bucket=self.bucket, Key=lock, Body=self._lease_body(owner), IfMatch=etag
                )["ETag"]
            except ClientError as error:
                if _code(error) in _CONFLICT | _MISSING:
                    return  # taken over: this holder stalled for longer than a lease
                raise

    def _take(self, lock: str, owner: str) -> str | None:
        """Create the lease, or take over an expired one; its ETag if this caller holds
        it now, else None."""
        try:
            return self.s3.put_object(
                Bucket=self.bucket, Key=lock, Body=self._lease_body(owner), IfNoneMatch="*"
            )["ETag"]
        except ClientError as error:
            if _code(error) not in _CONFLICT:
                raise
        held = self._get(lock)
        if held is None:
            return None  # released meanwhile: the next attempt creates it
        if json.loads(held["Body"].read()).get("expires", 0) > time.time():
            return None
        try:
            return self.s3.put_object(
                Bucket=self.bucket, Key=lock, Body=self._lease_body(owner), IfMatch=held["ETag"]
            )["ETag"]
        except ClientError as error:
            if _code(error) in _CONFLICT | _MISSING:
                return None  # another waiter took it over first
            raise

    def _holds(self, version_key: str, files: Mapping[str, bytes]) -> bool:
        """Whether the version holds exactly ``files`` (same names, sizes and MD5 ETags)."""
        prefix = self._object(version_key) + "/"
        stored = {o["Key"][len(prefix) :]: o for o in self._objects_under(prefix)}
        return set(stored) == set(files) and all(
            stored[n]["Size"] == len(d)
            and stored[n]["ETag"].strip('"') == hashlib.md5(d, usedforsecurity=False).hexdigest()
            for n, d in files.items()
        )

    def publish_dir(self, key: str, files: Mapping[str, bytes]) -> None:
        """Write ``files`` as the complete new content of directory ``key``, atomically for
        readers: the files under a new version prefix, then the pointer object, one PUT.

        Publications of one day take turns (``locked``); publishing exactly what the
        current version holds writes nothing. A replaced version is kept for
        RETIRED_GRACE_SECONDS after the pointer moved off it (a reader that resolved the old
        pointer can finish); each publication then deletes the expired versions of its day
        and of the other days in its folder that no one is publishing (``_sweep``).
        """
        with self.locked(key):
            current = self._version(key)
            if current is None or not self._holds(f"{key}/{VERSIONS}/{current}", files):
                current = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
                folder = f"{key}/{VERSIONS}/{current}"
                self.each(
                    lambda file: self.write_bytes(f"{folder}/{check_key(file[0])}", file[1]),
                    files.items(),
                )
                pointer = json.dumps({"version": current, "files": sorted(files)}).encode()
                self.write_bytes(f"{key}/{POINTER}", pointer)
            self._sweep(key)
        self._sweep_folder(key)

    def _sweep(self, key: str, names: Iterable[str] | None = None) -> None:
        """For the holder of ``key``'s lease: delete the objects of every version of
        ``key`` but the current one (what a publisher that died before its pointer PUT
        staged too) once the pointer moved more than RETIRED_GRACE_SECONDS ago. ``names``:
        the objects under ``key`` if the caller listed them already."""
        pointer = self._get(self._object(f"{key}/{POINTER}"))
        if pointer is None:
            return
        moved = pointer["LastModified"].timestamp()
        if time.time() - moved < objects.RETIRED_GRACE_SECONDS:
            return
        prefix = self._object(f"{key}/{VERSIONS}") + "/"
        keep = f"{prefix}{json.loads(pointer['Body'].read())['version']}/"
        if names is None:
            names = (o["Key"] for o in self._objects_under(prefix))
        self._delete_objects([n for n in names if n.startswith(prefix) and not n.startswith(keep)])

    def _sweep_folder(self, key: str) -> None:
        """Sweep the other published directories beside ``key`` that hold more than one
        version (one listing of the folder), each unless its lease is held by someone
        else (it is being published)."""
        parent = str(PurePosixPath(key).parent)
        parent = "" if parent == "." else parent
        base = self._object(parent)
        base = f"{base}/" if base else ""
        versions: dict[str, set[str]] = {}
        names: dict[str, list[str]] = {}
        for listed in self._objects_under(base):
            parts = listed["Key"][len(base) :].split("/")
            if len(parts) >= 4 and parts[1] == VERSIONS:
                versions.setdefault(parts[0], set()).add(parts[2])
                names.setdefault(parts[0], []).append(listed["Key"])
        for name, held in versions.items():
            other = f"{parent}/{name}" if parent else name
            if len(held) < 2 or other == key:
                continue
            with self._lease(other, wait=False) as leased:
                if leased:
                    self._sweep(other, names[name])
