"""The storage layer: safe keys, atomic files and atomic directory swaps."""

from __future__ import annotations

import os
import threading
import time

import pytest

from aml_pipeline.storage import objects
from aml_pipeline.storage.objects import LocalStorage, StorageKeyError


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../b", "a//b", "a\\b", "./a"])
def test_unsafe_keys_are_refused(tmp_path, key):
    with pytest.raises(StorageKeyError):
        LocalStorage(tmp_path).local_path(key)


def test_write_read_list_delete(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write_bytes("a/b/c.txt", b"hello")
    assert storage.read_bytes("a/b/c.txt") == b"hello"
    assert storage.list_dir("a/b") == ["c.txt"]
    assert storage.list_dir() == ["a"]
    storage.delete("a")
    assert not storage.exists("a/b/c.txt")


def test_publish_dir_replaces_the_whole_directory(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    storage.publish_dir("net/2025-01-01", {"x.parquet": b"1", "old.json": b"2"})
    storage.publish_dir("net/2025-01-01", {"x.parquet": b"3"})
    assert storage.list_dir("net/2025-01-01") == ["x.parquet"]
    assert storage.read_bytes("net/2025-01-01/x.parquet") == b"3"
    assert storage.list_dir("net") == ["2025-01-01"]  # the versions folder is hidden
    versions = tmp_path / "net" / ".2025-01-01.versions"
    for n in range(4):
        storage.publish_dir("net/2025-01-01", {"x.parquet": b"4%d" % n})
    assert len(os.listdir(versions)) == 6  # every version retired within the grace period
    current = os.readlink(tmp_path / "net" / "2025-01-01")
    for _ in range(3):  # the same content again: nothing is written
        storage.publish_dir("net/2025-01-01", {"x.parquet": b"43"})
    assert len(os.listdir(versions)) == 6
    assert os.readlink(tmp_path / "net" / "2025-01-01") == current
    monkeypatch.setattr(objects, "RETIRED_GRACE_SECONDS", 0)
    storage.publish_dir("net/2025-01-01", {"x.parquet": b"5"})
    assert os.listdir(versions) == [os.readlink(tmp_path / "net" / "2025-01-01").split("/")[1]]
    storage.delete("net/2025-01-01")
    assert os.listdir(tmp_path / "net") == []


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


def test_readers_never_miss_a_day_while_it_is_republished(tmp_path):
    """Readers hammer a day while it is re-published in a loop: every read sees one whole
    version (both files of the same version), none finds the day missing."""
    storage = LocalStorage(tmp_path)
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
    for version in range(1, 200):
        data = str(version).encode()
        storage.publish_dir("net/day", {"a": data, "b": data})
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors, errors[:3]
    assert len(seen) > 10  # the readers really ran during the re-publications


def test_a_failed_file_write_leaves_no_temp_file(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write_bytes("f.bin", b"old")
    with pytest.raises(RuntimeError), storage.writing("f.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("crash")
    assert storage.read_bytes("f.bin") == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]
