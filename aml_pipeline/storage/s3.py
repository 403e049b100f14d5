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
  (``If-None-Match: *``); an expired lease is taken over with ``If-Match`` on its ETag, so
  two waiters never both take it.
* ``read_path`` downloads an object once per version (its ETag) into a local cache, where
  DuckDB and pyarrow scan it as they scan a local file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from aml_pipeline.storage import objects
from aml_pipeline.storage.objects import StorageUnavailable, check_key

POINTER = ".current"
VERSIONS = ".v"
#: A lock not released within this time (its holder died) may be taken over.
LEASE_SECONDS = 300
#: How long ``locked`` waits for a lock held by someone else before it gives up.
LOCK_WAIT_SECONDS = 900
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


def client(attempts: int = 4) -> Any:
    """An S3 client from the standard AWS settings; path-style addressing when an
    endpoint is set (S3-compatible servers), bounded timeouts and retries."""
    config = Config(
        s3={"addressing_style": "path" if _endpoint() else "auto"},
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.session.Session().client("s3", region_name=region, config=config)


class S3Storage:
    """Keys as objects under ``s3://bucket/prefix/``; see the module's docstring."""

    def __init__(self, url: str, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.bucket, self.prefix = split_url(url)
        default = Path(tempfile.gettempdir()) / "aml-pipeline-s3-cache"
        self.cache = Path(cache_dir or default) / self.bucket / (self.prefix or "_")
        self._client: Any = None

    def __repr__(self) -> str:
        return f"S3Storage({self.url('')!r})"

    @property
    def scan_dir(self) -> Path:
        """Where every ``read_path`` lies: the local cache (DuckDB's sandbox allows only it)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        return self.cache

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its client (worker processes make their own)."""
        return {**self.__dict__, "_client": None}

    @property
    def s3(self) -> Any:
        """This process's S3 client, made on first use."""
        if self._client is None:
            self._client = client()
        return self._client

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
        """Make ``copy`` (written by ``fill`` into a temp file, renamed), drop older ones."""
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
        return copy

    def read_path(self, key: str) -> Path:
        """A local copy of ``key`` to scan, downloaded once per version of the object
        (its ETag) into the cache (what this process wrote is there already); earlier
        versions' copies are removed."""
        located = self._follow(key, self._head)
        if located is None:
            raise FileNotFoundError(f"{self.url(key)}: no such object")
        name, head = located
        copy = self._cached(name, head["ETag"])
        if copy.is_file():
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
        """Hold the lease object ``.{name}.lock`` beside ``key`` for a read-modify-write:
        created with ``If-None-Match: *`` (one holder), released by deleting it; a lease
        older than LEASE_SECONDS is taken over with ``If-Match`` on its ETag."""
        path = PurePosixPath(self._object(key))
        lock = str(path.with_name(f".{path.name}.lock"))
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        deadline, pause = time.monotonic() + LOCK_WAIT_SECONDS, 0.02
        while True:
            body = json.dumps({"owner": owner, "expires": time.time() + LEASE_SECONDS})
            if self._take(lock, body.encode()):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url(key)}: locked by another writer for too long")
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        try:
            yield
        finally:
            held = self._get(lock)
            if held is not None and json.loads(held["Body"].read()).get("owner") == owner:
                self.s3.delete_object(Bucket=self.bucket, Key=lock)

    def _take(self, lock: str, body: bytes) -> bool:
        """Create the lease, or take over an expired one; whether this caller holds it."""
        try:
            self.s3.put_object(Bucket=self.bucket, Key=lock, Body=body, IfNoneMatch="*")
            return True
        except ClientError as error:
            if _code(error) not in _CONFLICT:
                raise
        held = self._get(lock)
        if held is None:
            return False  # released meanwhile: the next attempt creates it
        if json.loads(held["Body"].read()).get("expires", 0) > time.time():
            return False
        try:
            self.s3.put_object(Bucket=self.bucket, Key=lock, Body=body, IfMatch=held["ETag"])
            return True
        except ClientError as error:
            if _code(error) in _CONFLICT | _MISSING:
                return False  # another waiter took it over first
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
        current version holds writes nothing. Versions the pointer left more than
        RETIRED_GRACE_SECONDS ago (a reader that resolved the old pointer has finished)
        are deleted at the day's next publication.
        """
        with self.locked(key):
            current = self._version(key)
            if current is None or not self._holds(f"{key}/{VERSIONS}/{current}", files):
                current = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
                for name, data in files.items():
                    self.write_bytes(f"{key}/{VERSIONS}/{current}/{check_key(name)}", data)
                pointer = json.dumps({"version": current, "files": sorted(files)}).encode()
                self.write_bytes(f"{key}/{POINTER}", pointer)
            self._sweep(key, current)

    def _sweep(self, key: str, current: str) -> None:
        """Delete the versions of ``key`` but ``current`` once the pointer moved to it
        more than RETIRED_GRACE_SECONDS ago."""
        head = self._head(self._object(f"{key}/{POINTER}"))
        if (
            head is None
            or time.time() - head["LastModified"].timestamp() < objects.RETIRED_GRACE_SECONDS
        ):
            return
        prefix = self._object(f"{key}/{VERSIONS}") + "/"
        keep = f"{prefix}{current}/"
        self._delete_objects(
            [o["Key"] for o in self._objects_under(prefix) if not o["Key"].startswith(keep)]
        )
