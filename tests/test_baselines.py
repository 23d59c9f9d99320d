"""The no-learning baselines' cache (mixem.baselines): a row damaged on disk is recomputed, never reported."""

import json

import numpy as np
import pytest

from mixem.baselines import pixel_baselines


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    images = (rng.normal(size=(60, 1, 4, 4)) + labels[:, None, None, None] * 3).astype(np.float32)
    return images, labels


def run(blobs, cache):
    return pixel_baselines(*blobs, 3, seeds=[0, 1], n_init=2, max_iter=10, cache=cache)


@pytest.mark.parametrize("damage", [
    lambda rows: {key: {**row, "acc": 7.5} for key, row in rows.items()},       # out of range
    lambda rows: {key: {**row, "nmi": None} for key, row in rows.items()},      # null (NaN written by hand)
    lambda rows: {key: {**row, "ari": "0.9"} for key, row in rows.items()},     # text
    lambda rows: {key: {"acc": 1.0} for key in rows},                           # keys missing
    lambda rows: [1, 2],                                                         # not a mapping
])
def test_a_damaged_cache_row_is_recomputed(blobs, tmp_path, damage):
    cache = tmp_path / "baselines.json"
    first = run(blobs, cache)
    assert all(0 <= row["acc"] <= 1 for row in first) and cache.is_file()
    cache.write_text(json.dumps(damage(json.loads(cache.read_text()))))
    assert run(blobs, cache) == first
    assert run(blobs, cache) == first  # and the cache holds good rows again


def test_a_cache_that_is_not_json_is_recomputed(blobs, tmp_path):
    cache = tmp_path / "baselines.json"
    first = run(blobs, cache)
    cache.write_bytes(b"\xff{not json")
    assert run(blobs, cache) == first
