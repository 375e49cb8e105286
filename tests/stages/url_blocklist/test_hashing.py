"""The vectorized FNV-1a: equal to the textbook byte loop, forwards and reversed, and one
reversed pass over a host gives every parent domain's hash."""

import random

import numpy as np
import pyarrow as pa

from pipeline.core.bloom import bitmap_of, in_bitmap
from pipeline.stages.url_blocklist.hashing import (
    DOT,
    byte_matrix,
    fnv1a,
    running_fnv1a,
    string_bytes,
    strings_fnv1a,
)


def reference_fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


def _random_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-._/é"
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 70))) for _ in range(n)]


def test_vectorized_fnv1a_equals_the_byte_loop():
    strings = _random_strings(3000, seed=1) + ["", "a", "example.com", "bücher.de"]
    array = pa.array(strings)
    assert strings_fnv1a(array).tolist() == [reference_fnv1a(s.encode()) for s in strings]
    assert strings_fnv1a(array, reverse=True).tolist() == [reference_fnv1a(s.encode()[::-1]) for s in strings]
    # a slice of a large_string array, with nulls (hashed as empty)
    large = pa.array([None, *strings[:50], None], pa.large_string()).slice(1)
    assert fnv1a(*string_bytes(large)).tolist() == [reference_fnv1a(s.encode()) for s in strings[:50]] + [
        reference_fnv1a(b"")
    ]


def test_known_fnv1a_values():
    # published FNV-1a 64 test vectors
    assert strings_fnv1a(pa.array(["", "a", "foobar"])).tolist() == [
        0xCBF29CE484222325,
        0xAF63DC4C8601EC8C,
        0x85944171F73967E8,
    ]


def test_one_reversed_pass_gives_every_parent_domain():
    hosts = ["a.b.example.com", "www.example.co.uk", "x", "example.com", "deep.er.and.deeper.example.org"]
    data, starts, lengths = string_bytes(pa.array(hosts))
    matrix = byte_matrix(data, starts, lengths, int(lengths.max()), reverse=True)
    hashes = running_fnv1a(matrix)
    for column, host in enumerate(hosts):
        raw = host.encode()
        for j in range(len(raw)):
            if j == len(raw) - 1 or matrix[j + 1, column] == DOT:
                suffix = raw[len(raw) - 1 - j :]
                assert hashes[j, column] == strings_fnv1a(pa.array([suffix.decode()]), reverse=True)[0], suffix
    boundaries = [
        raw[len(raw) - 1 - j :].decode()
        for raw in [hosts[0].encode()]
        for j in range(len(raw))
        if j == len(raw) - 1 or raw[len(raw) - 2 - j] == DOT
    ]
    assert boundaries == ["com", "example.com", "b.example.com", "a.b.example.com"]


def test_hashes_do_not_depend_on_the_batch():
    strings = _random_strings(500, seed=2)
    whole = strings_fnv1a(pa.array(strings))
    parts = np.concatenate([strings_fnv1a(pa.array(strings[i : i + 37])) for i in range(0, 500, 37)])
    assert np.array_equal(whole, parts)


def test_the_bitmap_never_drops_a_listed_hash_and_stops_most_others():
    rng = np.random.default_rng(4)
    listed = np.sort(rng.integers(0, 2**64 - 1, 100_000, dtype=np.uint64))
    bitmap = bitmap_of(listed)
    assert in_bitmap(bitmap, listed).all()
    others = rng.integers(0, 2**64 - 1, 100_000, dtype=np.uint64)
    assert in_bitmap(bitmap, others).mean() < 1 / 12  # 16 or more bits per listed hash
    assert in_bitmap(bitmap_of(np.zeros(0, np.uint64)), others).sum() == 0
