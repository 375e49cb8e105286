import numpy as np
import pytest

from pipeline.core import distinct


def _hashes(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(np.int64).max, n, dtype=np.int64).astype(np.uint64)


@pytest.mark.parametrize("n", [1, 7, 300, 5_000])
def test_small_sets_are_counted_almost_exactly(n):
    registers = distinct.empty_registers()
    values = _hashes(n, n)
    distinct.add_hashes(registers, np.concatenate([values, values[: n // 2]]))  # repeats count once
    assert distinct.estimate(registers) == pytest.approx(n, rel=0.02, abs=1)


def test_large_sets_within_the_sketch_error_and_merging_is_the_union():
    whole, left, right = (distinct.empty_registers() for _ in range(3))
    values = _hashes(400_000, 1)
    distinct.add_hashes(whole, values)
    distinct.add_hashes(left, values[:250_000])
    distinct.add_hashes(right, values[150_000:])  # overlapping halves
    merged = np.maximum(left, right)
    assert np.array_equal(merged, whole)
    assert distinct.estimate(whole) == pytest.approx(400_000, rel=0.05)


def test_structured_hashes_are_mixed_before_counting():
    """Consecutive integers (what a weak hash of similar n-grams looks like) still count right."""
    registers = distinct.empty_registers()
    distinct.add_hashes(registers, np.arange(50_000, dtype=np.uint64))
    assert distinct.estimate(registers) == pytest.approx(50_000, rel=0.05)


def test_registers_round_trip_through_json_text():
    registers = distinct.empty_registers()
    distinct.add_hashes(registers, _hashes(1_000, 2))
    assert np.array_equal(distinct.decode(distinct.encode(registers)), registers)
    with pytest.raises(ValueError, match="registers"):
        distinct.decode(distinct.encode(registers[:10]))
