"""The data cache: built once per key, loaded after; corrupt, foreign and forged files detected
and rebuilt; a key file others could read is not trusted."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import shutil

import pytest
import torch

from twcore.contract.data_cache import (
    _MAGIC,
    CACHE_ENV,
    CONFIG_ENV,
    cache_key_path,
    cache_path,
    cache_root,
    cached_tensors,
)


class CountingBuild:
    """A build function that records how often it ran."""

    def __init__(self, value: float = 1.0) -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {"x": torch.full((3, 2), self.value), "y": torch.arange(3)}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "config"))  # a key of this test's own
    return tmp_path / "cache"


def test_second_call_loads_from_disk_without_building(cache_dir):
    build = CountingBuild()
    first = cached_tensors("demo", {"size": 3}, build)
    second = cached_tensors("demo", {"size": 3}, build)
    assert build.calls == 1
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name])
    assert cache_path("demo", {"size": 3}).parent == cache_dir / "data"


def test_a_different_key_or_name_builds_again(cache_dir):
    build = CountingBuild()
    cached_tensors("demo", {"size": 3}, build)
    cached_tensors("demo", {"size": 4}, build)
    cached_tensors("other", {"size": 3}, build)
    assert build.calls == 3


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # a partial write
        lambda data: data[:-5] + b"XXXXX",  # flipped bytes
        lambda data: b"",  # an empty file
        lambda data: b"not a cache file at all",
    ],
    ids=["truncated", "corrupted", "empty", "foreign"],
)
def test_a_damaged_file_is_detected_and_rebuilt(cache_dir, damage):
    build = CountingBuild(2.0)
    cached_tensors("demo", {"k": 1}, build)
    path = cache_path("demo", {"k": 1})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(UserWarning, match="corrupt or incomplete; rebuilding"):
        rebuilt = cached_tensors("demo", {"k": 1}, build)
    assert build.calls == 2
    assert torch.equal(rebuilt["x"], torch.full((3, 2), 2.0))
    assert cached_tensors("demo", {"k": 1}, build)["x"].sum() == 12.0
    assert build.calls == 2  # the rebuilt file is intact again


def test_caching_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_root() is None
    build = CountingBuild()
    cached_tensors("demo", {}, build)
    cached_tensors("demo", {}, build)
    assert build.calls == 2


def test_default_root_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "twcore"


def test_an_unwritable_cache_only_warns(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    with pytest.warns(UserWarning, match="could not write"):
        tensors = cached_tensors("demo", {}, CountingBuild())
    assert tensors["y"].tolist() == [0, 1, 2]


# -- forged, foreign and outdated files; the key file --------------------------------------------


def _torch_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "checksum",
    [
        lambda signed: hashlib.sha256(signed[-1]).digest(),  # what the v1 format accepted
        lambda signed: hashlib.sha256(b"".join(signed)).digest(),
        lambda signed: hmac.new(bytes(32), b"".join(signed), hashlib.sha256).digest(),
    ],
    ids=["sha256-of-payload", "sha256-of-everything", "hmac-with-a-guessed-key"],
)
def test_a_rewritten_payload_with_a_recomputed_checksum_is_rejected_and_rebuilt(
    cache_dir, checksum
):
    build = CountingBuild(2.0)
    cached_tensors("demo", {"k": 1}, build)
    path = cache_path("demo", {"k": 1})
    # What an attacker who can write the cache but not read the key file sees: magic line,
    # 32-byte tag, identity length, identity, payload. They swap the payload and re-checksum.
    data = path.read_bytes()
    start = len(_MAGIC) + 32 + 4
    length = int.from_bytes(data[start - 4 : start], "big")
    forged = _torch_bytes({"x": torch.full((3, 2), 666.0), "y": torch.arange(3)})
    signed = [_MAGIC, data[start - 4 : start], data[start : start + length], forged]
    path.write_bytes(_MAGIC + checksum(signed) + b"".join(signed[1:]))
    with pytest.warns(UserWarning, match="was tampered with, signed with another cache key"):
        rebuilt = cached_tensors("demo", {"k": 1}, build)
    assert build.calls == 2
    assert torch.equal(rebuilt["x"], torch.full((3, 2), 2.0))


def test_a_valid_file_copied_to_another_keys_path_is_rejected_and_rebuilt(cache_dir):
    cached_tensors("demo", {"k": 1}, CountingBuild(1.0))
    other = cache_path("demo", {"k": 2})
    shutil.copyfile(cache_path("demo", {"k": 1}), other)
    build = CountingBuild(2.0)
    with pytest.warns(UserWarning, match=f"{other.name} holds another configuration's data"):
        rebuilt = cached_tensors("demo", {"k": 2}, build)
    assert build.calls == 1
    assert torch.equal(rebuilt["x"], torch.full((3, 2), 2.0))
    cached_tensors("demo", {"k": 2}, build)
    assert build.calls == 1  # the rebuilt file is its own


def test_a_file_from_the_previous_format_is_rebuilt(cache_dir):
    build = CountingBuild(2.0)
    cached_tensors("demo", {"k": 1}, build)
    payload = _torch_bytes({"x": torch.zeros(3, 2), "y": torch.arange(3)})
    old = b"twcore-tensor-cache-v1\n" + hashlib.sha256(payload).digest() + payload
    cache_path("demo", {"k": 1}).write_bytes(old)
    with pytest.warns(UserWarning, match="written by another twcore version; rebuilding"):
        rebuilt = cached_tensors("demo", {"k": 1}, build)
    assert build.calls == 2 and rebuilt["x"].sum() == 12.0


def test_files_signed_with_a_replaced_key_are_rebuilt(cache_dir):
    build = CountingBuild()
    cached_tensors("demo", {"k": 1}, build)
    cache_key_path().unlink()  # the next call makes a new key
    with pytest.warns(UserWarning, match="signed with another cache key"):
        cached_tensors("demo", {"k": 1}, build)
    assert build.calls == 2


def test_the_key_is_made_private_outside_the_cache_directory(cache_dir, tmp_path):
    cached_tensors("demo", {}, CountingBuild())
    key = tmp_path / "config" / "cache.key"
    assert cache_key_path() == key
    assert key.stat().st_size == 32
    assert key.stat().st_mode & 0o777 == 0o600


def test_the_default_key_location_follows_xdg_config_home(monkeypatch, tmp_path):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert cache_key_path() == tmp_path / "twcore" / "cache.key"


@pytest.mark.skipif(os.name != "posix", reason="file modes and owners are POSIX")
@pytest.mark.parametrize("untrusted", ["mode-0644", "another-owner"])
def test_a_key_file_others_could_read_turns_the_cache_off(cache_dir, monkeypatch, untrusted):
    build = CountingBuild()
    cached_tensors("demo", {}, build)  # a valid file now exists, signed with the key
    written = cache_path("demo", {}).stat().st_ino  # a rewrite would be a new file (os.replace)
    if untrusted == "mode-0644":
        cache_key_path().chmod(0o644)
        message = r"cache is off: its key file .*cache.key is open to other users \(mode 0644"
    else:
        monkeypatch.setattr(os, "getuid", lambda: os.stat(cache_key_path()).st_uid + 1)
        message = r"cache is off: its key file .*cache.key is owned by uid \d+, not by you"
    for _ in range(2):
        with pytest.warns(UserWarning, match=message):
            tensors = cached_tensors("demo", {}, build)
        assert tensors["y"].tolist() == [0, 1, 2]
    assert build.calls == 3  # neither read nor written while the key is not trusted
    assert cache_path("demo", {}).stat().st_ino == written
