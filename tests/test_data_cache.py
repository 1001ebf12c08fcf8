"""The data cache: built once per key, loaded after, corrupt files detected and rebuilt."""

from __future__ import annotations

import pytest
import torch

from twcore.data_cache import CACHE_ENV, cache_path, cache_root, cached_tensors


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
