"""How many distinct values a run saw, from a mergeable, deterministic sketch.

HyperLogLog (Flajolet et al. 2007) over 64-bit hashes: ``2 ** PRECISION`` registers, each the
largest rank (leading zeros + 1) of the hashes routed to it by their top bits. Registers of
blocks merge by their element-wise maximum, so the estimate is the same however the run is
split. Relative error about 1.04 / sqrt(2 ** PRECISION) (2.3%); small sets are counted by
linear counting, which is close to exact.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np

from pipeline.core.hashing import mix64

PRECISION = 11
REGISTERS = 1 << PRECISION


def empty_registers() -> np.ndarray:
    return np.zeros(REGISTERS, np.uint8)


def add_hashes(registers: np.ndarray, hashes: np.ndarray) -> None:
    """Count 64-bit ``hashes`` into ``registers`` (in place)."""
    if not len(hashes):
        return
    x = mix64(hashes)
    index = (x >> np.uint64(64 - PRECISION)).astype(np.int64)
    rest = x << np.uint64(PRECISION)
    # leading zeros from the top 32 bits (exact in float64); a rank past 33 has odds 2**-32
    high = (rest >> np.uint64(32)).astype(np.float64)
    rank = np.where(high > 0, 32 - np.floor(np.log2(np.maximum(high, 1))), 33).astype(np.uint8)
    np.maximum.at(registers, index, rank)


def estimate(registers: np.ndarray) -> float:
    m = float(REGISTERS)
    zeros = int(np.count_nonzero(registers == 0))
    raw = (0.7213 / (1 + 1.079 / m)) * m * m / float(np.sum(np.ldexp(1.0, -registers.astype(np.int64))))
    if raw <= 2.5 * m and zeros:
        return m * np.log(m / zeros)
    return raw


def encode(registers: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(registers.tobytes(), 6)).decode("ascii")


def decode(text: str) -> np.ndarray:
    registers = np.frombuffer(zlib.decompress(base64.b64decode(text)), np.uint8)
    if len(registers) != REGISTERS:
        raise ValueError(f"a distinct-count sketch has {len(registers)} registers, not {REGISTERS}")
    return registers.copy()
