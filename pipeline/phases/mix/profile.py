"""What the report compares synthetic with real data on, so that a user sees when one
pattern dominates the synthetic part of a mixture (model collapse starts there).

Per domain, over the documents the dedup phase kept (before the mixture samples them),
gathered per shard by the tokenize phase and merged by the report:

- length: characters per document, in the run-wide log-bucket sketch (``pipeline.core.sketch``);
- openings: documents per opening (first ``OPENING_WORDS`` normalized words); a generator
  that starts most answers alike shows as a few openings holding a large share. A shard
  keeps its ``OPENINGS_KEPT`` most frequent, so shares are exact for openings frequent
  enough to matter;
- distinct word 3-grams per 3-gram (distinct-n, Li et al. 2016) from HyperLogLog registers
  (``pipeline.core.distinct``), kept for nested samples of the documents (all, 1/4, 1/16, ...
  by their shuffle key) because the ratio falls as a set grows: the report compares two sets
  at about the same number of 3-grams;
- duplicates: documents the dedup phase removed, per stage; and for synthetic domains, whether
  the document each duplicates (the one it matched, else its survivor) is synthetic or real:
  the first is the near-duplicate rate within the synthetic set (a generator repeating
  itself), the second synthetic text that copies real text (a rewrite that kept its source).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import distinct
from pipeline.core.ngrams import ngram_hashes, words
from pipeline.core.sketch import BUCKET, COUNT, GROUP, bucket_counts, log_bucket_base, percentile_values

PROFILE_FORMAT = 2  # 2: duplicates_of
"""Part of the tokenize work hash of jobs that gather profiles: a change here redoes them."""
NGRAM = 3
OPENING_WORDS = 2
OPENINGS_KEPT = 200
OPENINGS_SHOWN = 5
TOP_OPENINGS = 10
"""The report's concentration figure: the share of documents the ``TOP_OPENINGS`` most frequent
openings start."""
SAMPLE_LEVELS = 6
"""Nested samples at rates 4**-k, k < SAMPLE_LEVELS (the smallest: 1/1024 of the documents)."""
LENGTH_GAMMA = log_bucket_base(0.01)
LENGTH_PERCENTILES = (10.0, 50.0, 90.0)


class DomainProfiles:
    """One shard's profile per domain (``to_json``), built batch by batch."""

    def __init__(self) -> None:
        self.domains: dict[str, dict[str, Any]] = {}
        self._registers: dict[str, list[np.ndarray]] = {}

    def _domain(self, name: str) -> dict[str, Any]:
        if name not in self.domains:
            self.domains[name] = {
                "documents": 0,
                "length_buckets": {},
                "openings": {},
                "ngrams": [0] * SAMPLE_LEVELS,
                "removed": {},
                "duplicates_of": {},
            }
            self._registers[name] = [distinct.empty_registers() for _ in range(SAMPLE_LEVELS)]
        return self.domains[name]

    def add_kept(self, domains: pa.Array, texts: pa.Array | pa.ChunkedArray, keys: np.ndarray) -> None:
        """Kept documents: their domains, texts and shuffle keys (uniform in [0, 1))."""
        if not len(domains):
            return
        names = np.asarray(domains.to_numpy(zero_copy_only=False), dtype=object)
        units = words(texts)
        lengths = pc.utf8_length(texts if isinstance(texts, pa.Array) else texts.combine_chunks())
        lengths = lengths.to_numpy(zero_copy_only=False).astype(np.float64)
        openings = pc.binary_join(pc.list_slice(units, 0, OPENING_WORDS), " ").to_numpy(zero_copy_only=False)
        hashes, docs, _ = ngram_hashes(units, NGRAM)
        # the deepest sample level each document belongs to: key < 4**-k for every k up to it
        with np.errstate(divide="ignore"):
            depth = np.minimum(np.floor(-np.log(np.maximum(keys, 1e-300)) / np.log(4)), SAMPLE_LEVELS - 1)
        ngram_depth = depth.astype(np.int64)[docs]
        for bucket in bucket_counts(names, lengths, LENGTH_GAMMA).to_pylist():
            into = self._domain(bucket[GROUP])["length_buckets"]
            into[bucket[BUCKET]] = into.get(bucket[BUCKET], 0) + bucket[COUNT]
        for name in np.unique(names):
            profile = self._domain(name)
            mine = names == name
            profile["documents"] += int(mine.sum())
            counts = profile["openings"]
            for opening in openings[mine]:
                if opening:
                    counts[opening] = counts.get(opening, 0) + 1
            of_domain = mine[docs]
            for level in range(SAMPLE_LEVELS):
                chosen = of_domain & (ngram_depth >= level)
                profile["ngrams"][level] += int(chosen.sum())
                distinct.add_hashes(self._registers[name][level], hashes[chosen])

    def add_removed(self, domains: pa.Array, stages: list[str]) -> None:
        """Documents the dedup phase removed: their domains and the stages that removed them."""
        for name, stage in zip(domains.to_pylist(), stages):
            removed = self._domain(name)["removed"]
            removed[stage] = removed.get(stage, 0) + 1

    def add_duplicate_sides(self, removed: list[tuple[str, str, str]]) -> None:
        """(domain, stage, side) per removed synthetic document: ``side`` is ``synthetic``,
        ``real`` or ``unlocated``, what the document it duplicates is."""
        for name, stage, side in removed:
            per_stage = self._domain(name)["duplicates_of"].setdefault(side, {})
            per_stage[stage] = per_stage.get(stage, 0) + 1

    def to_json(self) -> dict[str, Any]:
        out = {}
        for name, profile in sorted(self.domains.items()):
            openings = sorted(profile["openings"].items(), key=lambda kv: (-kv[1], kv[0]))
            out[name] = {
                **profile,
                "length_buckets": {str(b): n for b, n in sorted(profile["length_buckets"].items())},
                "openings": dict(openings[:OPENINGS_KEPT]),
                "openings_other": sum(n for _, n in openings[OPENINGS_KEPT:]),
                "registers": [
                    distinct.encode(r) if n else None for r, n in zip(self._registers[name], profile["ngrams"])
                ],
            }
        return out


def compare(shard_profiles: list[dict[str, Any]], synthetic_domains: list[str]) -> dict[str, Any] | None:
    """Synthetic against real: the report's comparison from every shard's ``to_json``.
    None when no shard has a profile."""
    if not shard_profiles:
        return None
    synthetic = set(synthetic_domains)
    sides: dict[str, dict[str, Any]] = {}
    length_rows: list[dict] = []
    registers: dict[str, list[np.ndarray]] = {}
    for shard in shard_profiles:
        for name, profile in shard.items():
            side_name = "synthetic" if name in synthetic else "real"
            side = sides.setdefault(
                side_name,
                {
                    "domains": set(),
                    "documents": 0,
                    "removed": {},
                    "duplicates_of": {},
                    "openings": {},
                    "ngrams": [0] * SAMPLE_LEVELS,
                },
            )
            side["domains"].add(name)
            side["documents"] += profile["documents"]
            for stage, n in profile["removed"].items():
                side["removed"][stage] = side["removed"].get(stage, 0) + n
            for of, per_stage in profile.get("duplicates_of", {}).items():
                into = side["duplicates_of"].setdefault(of, {})
                for stage, n in per_stage.items():
                    into[stage] = into.get(stage, 0) + n
            for opening, n in profile["openings"].items():
                side["openings"][opening] = side["openings"].get(opening, 0) + n
            length_rows += [{GROUP: side_name, BUCKET: int(b), COUNT: n} for b, n in profile["length_buckets"].items()]
            merged = registers.setdefault(side_name, [distinct.empty_registers() for _ in range(SAMPLE_LEVELS)])
            for level, encoded in enumerate(profile["registers"]):
                side["ngrams"][level] += profile["ngrams"][level]
                if encoded is not None:
                    np.maximum(merged[level], distinct.decode(encoded), out=merged[level])
    lengths = percentile_values(length_rows, LENGTH_GAMMA, LENGTH_PERCENTILES) if length_rows else {}
    # the level of each side whose 3-gram count is nearest (in ratio) to the smaller side's whole set
    smallest = min((s["ngrams"][0] for s in sides.values() if s["ngrams"][0]), default=0)
    out: dict[str, Any] = {"ngram": NGRAM, "sides": {}}
    for side_name in ("synthetic", "real"):
        side = sides.get(side_name)
        if side is None:
            continue
        documents, removed = side["documents"], side["removed"]
        reached = documents + sum(removed.values())
        ranked = sorted(side["openings"].items(), key=lambda kv: (-kv[1], kv[0]))
        entry: dict[str, Any] = {
            "domains": sorted(side["domains"]),
            "documents": documents,
            "length_chars": {f"p{p:g}": round(v) for p, v in zip(LENGTH_PERCENTILES, lengths.get(side_name, []))},
            "duplicates_removed": {stage: n for stage, n in sorted(removed.items())},
            "duplicate_rate": round(sum(removed.values()) / reached, 4) if reached else 0.0,
            "duplicates_of": {
                of: {
                    "removed": {stage: n for stage, n in sorted(per_stage.items())},
                    "rate": round(sum(per_stage.values()) / reached, 4) if reached else 0.0,
                }
                for of, per_stage in sorted(side["duplicates_of"].items())
            },
            "top_openings_share": round(sum(n for _, n in ranked[:TOP_OPENINGS]) / documents, 4) if documents else 0.0,
            "openings": [{"opening": o, "share": round(n / documents, 4)} for o, n in ranked[:OPENINGS_SHOWN]],
        }
        if smallest and side["ngrams"][0]:
            level = min(
                (k for k in range(SAMPLE_LEVELS) if side["ngrams"][k]),
                key=lambda k: abs(np.log(side["ngrams"][k] / smallest)),
            )
            total = side["ngrams"][level]
            entry["distinct_ngrams"] = {
                "ratio": round(min(1.0, distinct.estimate(registers[side_name][level]) / total), 4),
                "measured_on_ngrams": total,
                "sample_rate": 4.0**-level,
            }
        out["sides"][side_name] = entry
    return out


def comparison_lines(comparison: dict[str, Any]) -> list[str]:
    """The comparison as a markdown table."""
    sides = comparison["sides"]
    names = [n for n in ("synthetic", "real") if n in sides]
    n = comparison["ngram"]

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(sides[s]) for s in names) + " |"

    def distinct_cell(s: dict[str, Any]) -> str:
        d = s.get("distinct_ngrams")
        return f"{d['ratio']:.3f} (of {d['measured_on_ngrams']:,})" if d else "n/a"

    def openings_cell(s: dict[str, Any]) -> str:
        return ", ".join(f'"{o["opening"]}" {o["share"]:.1%}' for o in s["openings"]) or "n/a"

    def rate_cell(rate: float, per_stage: dict[str, int]) -> str:
        parts = ", ".join(f"{stage} {k:,}" for stage, k in per_stage.items())
        return f"{rate:.2%}" + (f" ({parts})" if parts else "")

    def removed_cell(s: dict[str, Any]) -> str:
        return rate_cell(s["duplicate_rate"], s["duplicates_removed"])

    def duplicates_of_cell(of: str):
        def cell(s: dict[str, Any]) -> str:
            if s is not sides.get("synthetic"):
                return "n/a"
            found = s.get("duplicates_of", {}).get(of)
            return rate_cell(found["rate"], found["removed"]) if found else rate_cell(0.0, {})

        return cell

    lines = [
        "",
        "### Synthetic against real data",
        "",
        "Over the documents dedup kept, before sampling. Distinct word "
        f"{n}-grams per {n}-gram falls as a set grows, so each side is measured on a sample of about "
        f"as many {n}-grams as the smaller side has; a low share of distinct {n}-grams or a few openings "
        "holding many documents means one pattern dominates. A synthetic document removed as a duplicate "
        "counts within the synthetic set when the document it matched (else its survivor) is synthetic: "
        "the generator repeats itself; of real documents when that one is real: the output copies its source.",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        row("domains", lambda s: ", ".join(s["domains"])),
        row("documents", lambda s: f"{s['documents']:,}"),
        row("characters p10 / p50 / p90", lambda s: " / ".join(f"{v:,}" for v in s["length_chars"].values()) or "n/a"),
        row(f"distinct {n}-grams per {n}-gram", distinct_cell),
        row("removed as duplicates", removed_cell),
    ]
    if "synthetic" in sides:
        lines += [
            row("of which duplicates within the synthetic set", duplicates_of_cell("synthetic")),
            row("of which duplicates of real documents", duplicates_of_cell("real")),
        ]
        if sides["synthetic"].get("duplicates_of", {}).get("unlocated"):
            lines.append(row("of which duplicates of documents no longer annotated", duplicates_of_cell("unlocated")))
    lines += [
        row(f"share of the {TOP_OPENINGS} most frequent openings", lambda s: f"{s['top_openings_share']:.1%}"),
        row("most frequent openings", openings_cell),
    ]
    return lines
