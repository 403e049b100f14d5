"""The storage layer: safe keys, atomic files and atomic directory swaps. The contract
tests run on the local disk and, marked ``s3`` (``make s3-check``), on a real S3 server
(SeaweedFS); the rest are the local implementation's own."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from aml_pipeline.storage import objects, s3
from aml_pipeline.storage.objects import LocalStorage, Storage, StorageKeyError


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage(request, tmp_path, monkeypatch) -> Storage:
    """The storage under test: a local root, or a new bucket on the S3 server."""
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    return s3.S3Storage(request.getfixturevalue("s3_root"), cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../b", "a//b", "a\\b", "./a"])
def test_unsafe_keys_are_refused(tmp_path, key):
    with pytest.raises(StorageKeyError):
        LocalStorage(tmp_path).local_path(key)


def test_write_read_list_delete(storage):
    storage.write_bytes("a/b/c.txt", b"hello")
    storage.write_bytes("a/.hidden", b"x")
    assert storage.read_bytes("a/b/c.txt") == b"hello"
    assert storage.exists("a/b/c.txt") and storage.exists("a/b") and not storage.exists("a/z")
    assert storage.list_dir("a/b") == ["c.txt"]
    assert storage.list_dir("a") == ["b"] and storage.list_dir() == ["a"]
    assert storage.read_path("a/b/c.txt").read_bytes() == b"hello"
    storage.write_bytes("a/b/c.txt", b"changed")  # a scan sees the new content
    assert storage.read_path("a/b/c.txt").read_bytes() == b"changed"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("a/b/missing.txt")
    storage.delete("a")
    assert not storage.exists("a/b/c.txt") and not storage.exists("a")


def test_a_failed_write_keeps_the_previous_file(storage):
    storage.write_bytes("f.bin", b"old")
    with pytest.raises(RuntimeError), storage.writing("f.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("crash")
    assert storage.read_bytes("f.bin") == b"old"
    with storage.writing("f.bin") as tmp:
        tmp.write_bytes(b"new")
    assert storage.read_bytes("f.bin") == b"new"


def test_a_published_directory_is_replaced_whole(storage, monkeypatch):
    storage.publish_dir("net/day", {"x.parquet": b"1", "old.json": b"2"})
    first = storage.resolve_dir("net/day")
    storage.publish_dir("net/day", {"x.parquet": b"3"})
    second = storage.resolve_dir("net/day")
    assert first != second
    assert storage.list_dir("net/day") == ["x.parquet"]  # read through the pointer
    assert storage.read_bytes("net/day/x.parquet") == b"3"
    assert storage.read_bytes(f"{second}/x.parquet") == b"3"
    assert storage.read_bytes(f"{first}/old.json") == b"2"  # kept for the grace period
    assert storage.list_dir("net") == ["day"]
    storage.publish_dir("net/day", {"x.parquet": b"3"})  # the same content: nothing written
    assert storage.resolve_dir("net/day") == second
    monkeypatch.setattr(objects, "RETIRED_GRACE_SECONDS", 0)
    storage.publish_dir("net/day", {"x.parquet": b"4"})
    assert not storage.exists(f"{first}/old.json") and not storage.exists(f"{second}/x.parquet")
    storage.delete("net/day")
    assert not storage.exists("net/day/x.parquet") and storage.list_dir("net") in ([], ["day"])


def test_readers_never_miss_a_day_while_it_is_republished(storage):
    """Readers hammer a day while it is re-published in a loop: every read sees one whole
    version (both files of the same version), none finds the day missing."""
    storage.publish_dir("net/day", {"a": b"0", "b": b"0"})
    stop, seen, errors = threading.Event(), set(), []

    def read() -> None:
        while not stop.is_set():
            try:
                folder = storage.resolve_dir("net/day")
                a, b = storage.read_bytes(f"{folder}/a"), storage.read_bytes(f"{folder}/b")
                if a != b:
                    errors.append(f"mixed versions {a!r} {b!r}")
                seen.add(a)
            except OSError as exc:
                errors.append(repr(exc))

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for version in range(1, 100):
        data = str(version).encode()
        storage.publish_dir("net/day", {"a": data, "b": data})
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors, errors[:3]
    assert len(seen) > 10  # the readers really ran during the re-publications


def test_a_locked_read_modify_write_loses_no_update(storage):
    storage.write_bytes("registry.json", b"0")

    def add() -> None:
        for _ in range(10):
            with storage.locked("registry.json"):
                value = int(storage.read_bytes("registry.json"))
                storage.write_bytes("registry.json", str(value + 1).encode())

    writers = [threading.Thread(target=add) for _ in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert storage.read_bytes("registry.json") == b"40"


@pytest.mark.parametrize("storage", [pytest.param("s3", marks=pytest.mark.s3)], indirect=True)
def test_an_expired_lease_is_taken_over_and_a_live_one_waited_for(storage, monkeypatch):
    lock = f"{storage.prefix}/.registry.json.lock"
    dead = {"owner": "gone:1:x", "expires": time.time() - 1}
    storage.s3.put_object(Bucket=storage.bucket, Key=lock, Body=json.dumps(dead).encode())
    with storage.locked("registry.json"):  # the dead holder's lease has expired
        held = json.loads(storage.s3.get_object(Bucket=storage.bucket, Key=lock)["Body"].read())
        assert held["owner"] != dead["owner"]
    assert storage.list_dir() == []  # released
    live = {"owner": "alive:1:x", "expires": time.time() + 60}
    storage.s3.put_object(Bucket=storage.bucket, Key=lock, Body=json.dumps(live).encode())
    monkeypatch.setattr(s3, "LOCK_WAIT_SECONDS", 0.5)
    with (
        pytest.raises(TimeoutError, match="locked by another writer"),
        storage.locked("registry.json"),
    ):
        pass


def test_a_publication_sweeps_the_other_days_unless_one_is_being_published(storage, monkeypatch):
    storage.publish_dir("net/a", {"x": b"1"})
    old = storage.resolve_dir("net/a")
    storage.publish_dir("net/a", {"x": b"2"})
    storage.publish_dir("net/b", {"x": b"1"})
    assert storage.exists(f"{old}/x")  # a's pointer moved just now: kept for readers
    monkeypatch.setattr(objects, "RETIRED_GRACE_SECONDS", 0)
    with storage.locked("net/a"):  # a is being published: left alone
        storage.publish_dir("net/b", {"x": b"2"})
        assert storage.exists(f"{old}/x")
    storage.publish_dir("net/b", {"x": b"3"})
    assert not storage.exists(f"{old}/x")
    assert storage.read_bytes("net/a/x") == b"2" and storage.read_bytes("net/b/x") == b"3"


@pytest.mark.parametrize("storage", [pytest.param("s3", marks=pytest.mark.s3)], indirect=True)
def test_a_held_lease_is_renewed_and_a_dead_holders_expires(storage, monkeypatch):
    """A holder keeps its lease past LEASE_SECONDS by renewing it; a holder that stops
    renewing (killed) loses it after LEASE_SECONDS."""
    monkeypatch.setattr(s3, "LEASE_SECONDS", 0.6)
    taken = []
    with storage.locked("registry.json"):
        time.sleep(1.5)  # past two lease lengths: renewed meanwhile
        with storage._lease("registry.json", wait=False) as leased:
            taken.append(leased)
    with storage._lease("registry.json", wait=False) as leased:  # released
        taken.append(leased)
    lock = f"{storage.prefix}/.registry.json.lock"
    dead = {"owner": "killed:1:x", "expires": time.time() + 0.6}  # never renewed
    storage.s3.put_object(Bucket=storage.bucket, Key=lock, Body=json.dumps(dead).encode())
    with storage._lease("registry.json", wait=False) as leased:
        taken.append(leased)
    time.sleep(0.7)
    with storage._lease("registry.json", wait=False) as leased:
        taken.append(leased)
    assert taken == [False, True, False, True]


@pytest.mark.parametrize("storage", [pytest.param("s3", marks=pytest.mark.s3)], indirect=True)
def test_the_download_cache_keeps_the_recently_used_copies_within_its_limit(storage, monkeypatch):
    storage._cache_bytes = 3000
    for n in range(5):
        storage.write_bytes(f"t/{n}.bin", bytes([n]) * 1000)

    def cached() -> int:
        return sum(p.stat().st_size for p in storage.cache.glob("*/[!.]*"))

    paths = [storage.read_path(f"t/{n}.bin") for n in range(5)]
    assert cached() == 5000  # all just used (a scan may be reading them): none removed
    monkeypatch.setattr(s3, "CACHE_IN_USE_SECONDS", 0)
    for n, path in enumerate(paths):
        os.utime(path, (1000 + n, 1000 + n))  # used in this order, long ago
    os.utime(paths[0], (2000, 2000))  # 0 read again since
    storage.write_bytes("t/new.bin", b"n" * 1000)
    storage.read_path("t/new.bin")  # over the limit: the least recently used go
    assert cached() <= 0.9 * 3000
    assert paths[0].is_file() and not paths[1].is_file() and not paths[2].is_file()
    assert storage.read_path("t/1.bin").read_bytes() == bytes([1]) * 1000  # fetched again


def test_a_version_is_kept_for_the_grace_period_after_the_swap_that_replaced_it(tmp_path):
    """How old the version is does not count, only when the link last moved; a publication
    also sweeps the other days of its folder (with what a dead publisher staged), unless
    one of them is being published."""
    storage, net = LocalStorage(tmp_path), tmp_path / "net"
    storage.publish_dir("net/a", {"x": b"1"})
    storage.publish_dir("net/a", {"x": b"2"})
    (net / ".a.versions" / "00000000000000000001-dead").mkdir()  # staged, never swapped
    storage.publish_dir("net/b", {"x": b"1"})
    assert len(os.listdir(net / ".a.versions")) == 3  # a's link moved just now: all kept
    long_ago = time.time_ns() - 2 * objects.RETIRED_GRACE_SECONDS * 10**9
    os.utime(net / "a", ns=(long_ago, long_ago), follow_symlinks=False)
    with objects._lock(net / ".a.lock"):  # a is being published: not swept
        storage.publish_dir("net/b", {"x": b"2"})
        assert len(os.listdir(net / ".a.versions")) == 3
    storage.publish_dir("net/b", {"x": b"2"})  # unchanged: nothing written, a swept
    assert os.listdir(net / ".a.versions") == [os.readlink(net / "a").split("/")[1]]
    assert len(os.listdir(net / ".b.versions")) == 2  # b's own swap is recent
    assert storage.read_bytes("net/a/x") == b"2" and storage.read_bytes("net/b/x") == b"2"


def test_a_directory_published_before_versions_is_taken_over(tmp_path):
    (tmp_path / "net" / "day").mkdir(parents=True)
    (tmp_path / "net" / "day" / "a").write_bytes(b"old")
    storage = LocalStorage(tmp_path)
    storage.publish_dir("net/day", {"a": b"new"})
    assert storage.read_bytes("net/day/a") == b"new" and (tmp_path / "net" / "day").is_symlink()


def test_an_unversioned_directory_is_versioned_even_when_its_content_is_unchanged(tmp_path):
    """Skipping it would leave readers on the plain path, which the next publication then
    moves away between two reads of one request."""
    (tmp_path / "net" / "day").mkdir(parents=True)
    (tmp_path / "net" / "day" / "a").write_bytes(b"same")
    LocalStorage(tmp_path).publish_dir("net/day", {"a": b"same"})
    assert (tmp_path / "net" / "day").is_symlink()


def test_a_failed_publish_keeps_the_previous_directory(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    storage.publish_dir("net/day", {"a": b"old"})

    def fail(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        storage.publish_dir("net/day", {"a": b"new"})
    monkeypatch.undo()
    assert storage.read_bytes("net/day/a") == b"old"
    assert sorted(os.listdir(tmp_path / "net")) == [".day.lock", ".day.versions", "day"]
    assert len(os.listdir(tmp_path / "net" / ".day.versions")) == 1  # the failed one is gone


PUBLISHER = """
import sys, itertools
from aml_pipeline.storage.objects import storage_at
storage = storage_at(sys.argv[1])
for n in itertools.count():
    data = bytes([n % 251]) * (1 << 20)
    storage.publish_dir("net/day", {"a.bin": data, "b.bin": data, "c.bin": data})
    print(n, flush=True)
"""


def test_a_publisher_killed_mid_publication_leaves_no_half_published_day(storage, tmp_path):
    """``kill -9`` of a process re-publishing a day, at moments spread over its
    publications after its first: the day read afterwards is always one whole version."""
    import signal
    import subprocess
    import sys

    storage.publish_dir("net/day", {"a.bin": b"0", "b.bin": b"0", "c.bin": b"0"})
    root, seen = storage.url(""), set()
    for delay in (0.0, 0.1, 0.25, 0.5):
        publisher = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, root], stdout=subprocess.PIPE, text=True
        )
        publisher.stdout.readline()  # its first publication is done: kill it in a later one
        time.sleep(delay)
        publisher.send_signal(signal.SIGKILL)
        publisher.wait(timeout=10)
        # what the next publisher would find after LEASE_SECONDS on S3 (tested apart):
        # the dead one's lease gone; a local flock went with its process
        storage.delete("net/.day.lock")
        folder = storage.resolve_dir("net/day")
        files = {name: storage.read_bytes(f"{folder}/{name}") for name in ("a.bin", "b.bin")}
        files["c.bin"] = storage.read_bytes(f"{folder}/c.bin")
        assert len(set(files.values())) == 1, f"a mix of versions after {delay} s"
        assert storage.list_dir("net/day") == ["a.bin", "b.bin", "c.bin"]
        seen.add(files["a.bin"][:1])
    assert len(seen) > 1  # the publishers did publish before they were killed
