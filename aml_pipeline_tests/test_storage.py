"""The storage layer: safe keys, atomic files and atomic directory swaps."""

from __future__ import annotations

import os

import pytest

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


def test_publish_dir_replaces_the_whole_directory(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.publish_dir("net/2025-01-01", {"x.parquet": b"1", "old.json": b"2"})
    storage.publish_dir("net/2025-01-01", {"x.parquet": b"3"})
    assert storage.list_dir("net/2025-01-01") == ["x.parquet"]
    assert storage.read_bytes("net/2025-01-01/x.parquet") == b"3"
    assert sorted(os.listdir(tmp_path / "net")) == ["2025-01-01"]


def test_a_failed_publish_keeps_the_previous_directory(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    storage.publish_dir("net/day", {"a": b"old"})
    real_replace = os.replace
    calls = []

    def fail_second_rename(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_second_rename)
    with pytest.raises(OSError):
        storage.publish_dir("net/day", {"a": b"new"})
    monkeypatch.undo()
    assert storage.read_bytes("net/day/a") == b"old"
    assert sorted(os.listdir(tmp_path / "net")) == ["day"]


def test_a_failed_file_write_leaves_no_temp_file(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write_bytes("f.bin", b"old")
    with pytest.raises(RuntimeError), storage.writing("f.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("crash")
    assert storage.read_bytes("f.bin") == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]
