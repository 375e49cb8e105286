"""Domain-weighted mixing: which domain each document belongs to, how many copies of it
the output holds, and where in the global order each copy goes.

Every kept document gets a seeded uniform number ``u`` in [0, 1). A domain sampled at
rate ``r`` (tokens wanted / tokens available) contributes copy ``c`` of a document for
every ``c >= 0`` with ``u + c < r``: so a document has ``floor(r)`` or ``floor(r) + 1``
copies and the domain yields ``r`` times its tokens in expectation; below 1 this is
Bernoulli downsampling. Copy ``c`` is placed at position ``(u + c) / r`` of the global
order, so the copies of one document are exactly ``1 / r`` of the stream apart (at
least ``1 / max_epochs``): repeats are as far apart as they can be, and every copy is
still uniformly placed. Positions define the global shuffle: output shard ``j`` takes the
copies with position in ``[b_j, b_(j+1))``, in position order, where the boundaries ``b``
cut the order into ranges of equal tokens.

A documents-only output has no tokens: there every amount above (weights, budget, shard
sizes) counts the documents' UTF-8 text bytes instead, the plan's ``unit``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STAGE_NAME = "mix"


class DomainRule(BaseModel):
    """Documents matching this rule belong to ``domain``. Give exactly one of ``url_regex``
    or ``files``; rules are tried in order and the first match wins."""

    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1)
    url_regex: str | None = None
    """RE2 regular expression searched in the document's URL, e.g. ``^https?://[^/]*wikipedia\\.org/``."""
    files: str | None = None
    """Glob matched against the input shard's path relative to ``input.uri``, e.g. ``github/*.parquet``."""

    @model_validator(mode="after")
    def _one_matcher(self) -> DomainRule:
        if (self.url_regex is None) == (self.files is None):
            raise ValueError("give exactly one of url_regex or files")
        if self.url_regex is not None:
            try:
                re.compile(self.url_regex)
            except re.error as exc:
                raise ValueError(f"url_regex is not a valid regular expression: {exc}") from None
        return self


class RehydrationStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_size: int = Field(ge=1)
    """Duplicate clusters of at least this many documents (the kept one included)..."""
    copies: float = Field(ge=0)
    """...multiply their kept document's rate by this (0 drops it)."""


class MixConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain_rules: list[DomainRule] = []
    """Rules that assign domains; documents no rule matches take the domain a stage routed
    them to (a classifier's ``route``), then the input's domain column
    (``input.domain_column``), and then ``default_domain``."""
    default_domain: str = Field("other", min_length=1)
    weights: dict[str, float] = {}
    """Target share of tokens per domain (normalized to sum 1). Empty: every domain at its
    natural ratio. A domain present in the data must have a weight (0 drops it)."""
    budget_tokens: int | None = Field(None, gt=0)
    """Total tokens wanted. Unset: with ``weights``, the largest budget no domain has to
    repeat for; without, every kept token once."""
    budget_bytes: int | None = Field(None, gt=0)
    """For ``output.kind: documents`` (no tokens; the mix counts UTF-8 text bytes): total
    text bytes wanted, as ``budget_tokens`` is for tokens."""
    max_epochs: float = Field(4.0, ge=1.0)
    """Most copies of any document (4: Muennighoff et al. 2023, repeated data is nearly as
    good as new up to about 4 epochs)."""
    rehydration: list[RehydrationStep] = []
    """FineWeb-2's rehydration: weight each kept document by the size of the duplicate
    cluster it stood for (``duplicate_count``: itself and the exact and near duplicates
    removed for it). Its copies are its domain's rate times the ``copies`` of the step with
    the largest ``min_size`` at or below its cluster size (1 below the first step), at most
    ``max_epochs``; weights and budget then apply to the rehydrated amounts. Empty: off."""
    synthetic_domains: list[str] = []
    """Domains of generated (synthetic) data; a generation job's own domain is one without
    being listed. The manifest records the real and synthetic shares."""
    min_real_fraction: float = Field(0.2, ge=0, le=1)
    """The floor of real data against model collapse (Shumailov et al. 2024; Gerstgrasser
    et al. 2024: accumulating real data alongside synthetic avoids it): in a mixture with
    both real and synthetic domains, real data must be at least this share of the output."""
    on_real_floor: Literal["fail", "rebalance"] = "fail"
    """A mixture under the floor: ``fail`` stops the job, naming the shares; ``rebalance``
    cuts the synthetic domains (keeping their proportions) until real data holds the floor."""
    max_synthetic_share: float | None = Field(None, ge=0, le=1)
    """A snapshot whose synthetic share is above this, and above the previous snapshot's (or
    with none before it), warns: in the log, the report's mixture and the manifest. A scheduled
    refresh that keeps adding generated data lets the synthetic share creep up run by run,
    each step under the floor's notice. Unset: no warning."""
    on_shortfall: Literal["keep_mixture", "keep_budget", "fail"] = "keep_mixture"
    """A domain that cannot supply its share even at ``max_epochs``: ``keep_mixture``
    shrinks the budget so every share holds; ``keep_budget`` caps that domain and gives the
    rest of its share to the others by weight; ``fail`` stops the job (strict)."""

    @field_validator("weights")
    @classmethod
    def _weights_valid(cls, value: dict[str, float]) -> dict[str, float]:
        for domain, weight in value.items():
            if weight < 0 or not math.isfinite(weight):
                raise ValueError(f"weight of '{domain}' must be a finite number >= 0 (got {weight})")
        if value and sum(value.values()) <= 0:
            raise ValueError("at least one weight must be above 0")
        return value

    @field_validator("rehydration")
    @classmethod
    def _steps_ascend(cls, value: list[RehydrationStep]) -> list[RehydrationStep]:
        sizes = [step.min_size for step in value]
        if sizes != sorted(set(sizes)):
            raise ValueError(f"min_size must ascend with no repeats (got {sizes})")
        return value

    def rehydration_weights(self, cluster_sizes: np.ndarray) -> np.ndarray:
        """Each kept document's copies multiplier from its cluster size."""
        weights = np.ones(len(cluster_sizes), dtype=np.float64)
        for step in self.rehydration:
            weights[cluster_sizes >= step.min_size] = step.copies
        return weights

    def rehydration_levels(self) -> list[float]:
        """Every multiplier a document can get."""
        return sorted({1.0, *(float(step.copies) for step in self.rehydration)})

    def domain_config(self) -> dict[str, Any]:
        """The part that decides domains (tokenized shards depend on it, not on weights)."""
        return self.model_dump(mode="json", include={"domain_rules", "default_domain"})


class MixtureError(RuntimeError):
    """The spec's mixture cannot be met (strict), or names domains the data lacks."""


# --- domains -----------------------------------------------------------------------------


def assign_domains(
    config: MixConfig,
    urls: pa.Array | None,
    column: pa.Array | None,
    shard_path: str,
    num_rows: int,
    routed: pa.Array | None = None,
) -> pa.Array:
    """Domain per document: first matching rule, else the domain a stage routed it to
    (``cols.ROUTED_DOMAIN``), else the domain column, else the default."""
    result = pa.nulls(num_rows, pa.string())
    for rule in config.domain_rules:
        if rule.files is not None:
            matched = fnmatch.fnmatchcase(shard_path, rule.files)
            hits = pa.array(np.full(num_rows, matched))
        elif urls is not None:
            hits = pc.fill_null(pc.match_substring_regex(urls, rule.url_regex), False)
        else:
            continue
        result = pc.if_else(pc.and_(pc.is_null(result), hits), pa.scalar(rule.domain), result)
    if routed is not None:
        result = pc.coalesce(result, routed.cast(pa.string()))
    if column is not None:
        usable = pc.if_else(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0), None, column)
        result = pc.coalesce(result, usable.cast(pa.string()))
    return pc.fill_null(result, config.default_domain)


def uniform_keys(seed: int, shard_key: str, rows: np.ndarray) -> np.ndarray:
    """A seeded uniform number in [0, 1) per (shard, row): stable however the run is split."""
    prefix = f"{seed}\x00{shard_key}\x00".encode()
    out = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows.tolist()):
        digest = hashlib.blake2b(prefix + str(row).encode(), digest_size=8).digest()
        out[i] = (int.from_bytes(digest, "little") >> 11) * (1.0 / (1 << 53))
    return out


# --- the plan ----------------------------------------------------------------------------


@dataclass
class MixPlan:
    """Amounts are in ``unit``: ``tokens``, or ``bytes`` (UTF-8 text) for a documents-only output."""

    rates: dict[str, float]
    """Copies per document, per domain (0 drops the domain)."""
    target: dict[str, float]
    available: dict[str, int]
    weights: dict[str, float]
    """The shares aimed for (normalized), or the natural shares."""
    budget: float
    unit: str = "tokens"
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "rates": self.rates,
            "target": self.target,
            "available": self.available,
            "weights": self.weights,
            "budget": self.budget,
            "notes": self.notes,
        }


def plan_mixture(
    config: MixConfig, available: dict[str, int], unit: str = "tokens", synthetic: set[str] | None = None
) -> MixPlan:
    """Sampling rates per domain from the tokens (or text bytes) each domain has after
    filtering and dedup, with the real-data floor applied. ``synthetic``: the synthetic
    domains (``config.synthetic_domains`` and a generation job's)."""
    plan = _plan_weights(config, available, unit)
    return _real_floor(plan, config, set(config.synthetic_domains) | (synthetic or set()))


def _real_floor(plan: MixPlan, config: MixConfig, synthetic: set[str]) -> MixPlan:
    fake = {d for d in plan.available if d in synthetic and plan.target[d] > 0}
    real = {d for d in plan.available if d not in synthetic and plan.target[d] > 0}
    if not fake or not real:  # an all-real mixture, or an all-synthetic output (the floor applies where it is mixed)
        return plan
    real_amount = sum(plan.target[d] for d in real)
    fake_amount = sum(plan.target[d] for d in fake)
    share = real_amount / (real_amount + fake_amount)
    floor = config.min_real_fraction
    if share >= floor - 1e-12:
        return plan
    listing = ", ".join(sorted(fake))
    message = (
        f"real data would be {share:.1%} of the output, under stages.mix.min_real_fraction {floor:g} "
        f"(synthetic: {listing})"
    )
    if config.on_real_floor == "fail":
        raise MixtureError(
            message + "; lower the synthetic domains' weights, add real data, or set on_real_floor: rebalance"
        )
    allowed = real_amount * (1 - floor) / floor if floor > 0 else fake_amount
    scale = allowed / fake_amount
    targets = {d: t * scale if d in fake else t for d, t in plan.target.items()}
    rates = {d: targets[d] / n for d, n in plan.available.items()}
    plan.notes.append(
        message + f"; rebalanced: the synthetic domains were cut to {scale:.1%} of their targets, so real data is "
        f"{floor:.0%} of the output"
    )
    return MixPlan(rates, targets, plan.available, plan.weights, sum(targets.values()), plan.unit, plan.notes)


def _plan_weights(config: MixConfig, available: dict[str, int], unit: str) -> MixPlan:

    def _fmt(amount: float) -> str:
        return f"{amount:,.0f} {unit}"

    budget_key = f"budget_{unit}"
    budget_given = getattr(config, budget_key)
    available = {d: int(n) for d, n in sorted(available.items()) if n > 0}
    notes: list[str] = []
    cap = config.max_epochs
    if not config.weights:
        total = sum(available.values())
        weights = {d: n / total for d, n in available.items()} if total else {}
        rate = 1.0 if budget_given is None or not total else budget_given / total
        if rate > cap:
            message = (
                f"the budget of {_fmt(budget_given)} needs {rate:.2f} epochs of the "
                f"{_fmt(total)} kept, more than max_epochs {cap:g}"
            )
            if config.on_shortfall == "fail":
                raise MixtureError(message + f"; lower stages.mix.{budget_key} or raise max_epochs")
            notes.append(message + f"; every domain is repeated {cap:g} times instead")
            rate = cap
        rates = {d: rate for d in available}
        return MixPlan(
            rates,
            {d: n * rate for d, n in available.items()},
            available,
            weights,
            sum(n * rate for n in available.values()),
            unit,
            notes,
        )

    unweighted = sorted(set(available) - set(config.weights))
    if unweighted:
        listing = ", ".join(f"{d} ({_fmt(available[d])})" for d in unweighted)
        raise MixtureError(
            f"stages.mix.weights has no weight for domains present in the data: {listing}. "
            "Give each a weight (0 drops a domain)."
        )
    wanted = {d: w for d, w in config.weights.items() if w > 0}
    missing = sorted(d for d in wanted if d not in available)
    if missing:
        message = f"domains with a weight have no kept documents: {', '.join(missing)}"
        if config.on_shortfall == "fail":
            raise MixtureError(message + "; check the domain rules or column, or remove their weights")
        notes.append(message + "; the other weights were renormalized without them")
        wanted = {d: w for d, w in wanted.items() if d in available}
        if not wanted:
            raise MixtureError("no domain with a weight above 0 has any kept documents")
    total_weight = sum(wanted.values())
    weights = {d: w / total_weight for d, w in sorted(wanted.items())}
    if budget_given is not None:
        budget = float(budget_given)
    else:
        budget = min(available[d] / w for d, w in weights.items())
        notes.append(f"no budget given: {_fmt(budget)}, the most with no domain repeated")
    targets = {d: budget * w for d, w in weights.items()}
    short = {d: t / available[d] for d, t in targets.items() if t / available[d] > cap * (1 + 1e-12)}
    if short:
        listing = "; ".join(
            f"{d} needs {r:.2f} epochs of its {_fmt(available[d])} to supply {_fmt(targets[d])}"
            for d, r in sorted(short.items())
        )
        if config.on_shortfall == "fail":
            raise MixtureError(
                f"the mixture cannot be met within max_epochs {cap:g}: {listing}. "
                f"Lower {budget_key}, change weights, raise max_epochs, or set on_shortfall."
            )
        if config.on_shortfall == "keep_mixture":
            budget = min(available[d] * cap / w for d, w in weights.items())
            targets = {d: budget * w for d, w in weights.items()}
            notes.append(
                f"short of data within max_epochs {cap:g}: {listing}. Kept the mixture: the budget was "
                f"reduced to {_fmt(budget)}"
            )
        else:
            targets = _fill_budget(budget, weights, available, cap)
            notes.append(
                f"short of data within max_epochs {cap:g}: {listing}. Kept the budget: short domains are "
                f"repeated {cap:g} times and the others take their share by weight"
            )
            if sum(targets.values()) < budget * (1 - 1e-9):
                notes.append(
                    f"every domain is at max_epochs: {_fmt(sum(targets.values()))}, "
                    f"short of the {_fmt(budget)} asked for"
                )
    rates = {d: targets.get(d, 0.0) / n for d, n in available.items()}
    dropped = sorted(d for d in available if d not in targets)
    if dropped:
        notes.append(f"weight 0: {', '.join(dropped)} left out")
    return MixPlan(
        rates, {d: targets.get(d, 0.0) for d in available}, available, weights, sum(targets.values()), unit, notes
    )


def _fill_budget(budget: float, weights: dict[str, float], available: dict[str, int], cap: float) -> dict[str, float]:
    """Water-filling: capped domains give their unmet share to the uncapped ones by weight."""
    capped: dict[str, float] = {}
    while True:
        open_weight = sum(w for d, w in weights.items() if d not in capped)
        remaining = budget - sum(capped.values())
        newly = {
            d: available[d] * cap
            for d, w in weights.items()
            if d not in capped and remaining * w / open_weight > available[d] * cap
        }
        if not newly:
            return {**capped, **{d: remaining * w / open_weight for d, w in weights.items() if d not in capped}}
        capped.update(newly)
        if len(capped) == len(weights):
            return capped


def effective_rate(rate: float, available: int, histogram: np.ndarray) -> float:
    """The rate whose copy rule meets ``rate * available`` tokens in this data.

    ``floor(rate)`` copies of every document are certain; the fractional part takes the
    documents with shuffle key below a threshold. Drawn independently per document it would
    miss the target by sampling noise (several percent for a small domain); instead the
    threshold is read off the domain's token histogram over the shuffle key, so the
    realized tokens match the target to within about one bin's share of a document.
    """
    whole = math.floor(rate)
    wanted = rate * available - whole * available
    if wanted <= 0 or available <= 0:
        return float(whole)
    cumulative = np.concatenate([[0.0], np.cumsum(histogram, dtype=np.float64)])
    bins = len(histogram)
    b = int(np.searchsorted(cumulative, wanted, side="left"))
    if b > bins:
        return float(whole) + 1.0
    b = max(b, 1)
    in_bin = histogram[b - 1]
    inside = (wanted - cumulative[b - 1]) / in_bin if in_bin else 1.0
    return whole + min(1.0, (b - 1 + inside) / bins)


# --- copies and positions ----------------------------------------------------------------


def document_rates(domain_rates: np.ndarray, weights: np.ndarray | None, max_epochs: float) -> np.ndarray:
    """Each document's rate: its domain's, times its rehydration weight, at most max_epochs."""
    if weights is None:
        return domain_rates
    return np.minimum(domain_rates * weights, max_epochs)


def copy_counts(u: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Copies of each document: the number of c >= 0 with u + c < rate."""
    return np.maximum(np.ceil(rates - u), 0).astype(np.int64)


def pile_of(u: np.ndarray, copy: np.ndarray, rates: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """Output shard of each copy: shard j holds positions in [boundaries[j], boundaries[j + 1]),
    position = (u + c) / rate."""
    position = (u + copy) / rates
    return np.clip(np.searchsorted(boundaries, position, side="right") - 1, 0, len(boundaries) - 2)


def shard_boundaries(rates: dict[str, float], histograms: dict[str, np.ndarray], num_shards: int) -> np.ndarray:
    """Positions that cut the global order into ``num_shards`` ranges of equal tokens.

    Each domain's token histogram over the shuffle key, copied once per copy and stretched
    by 1 / rate, gives the token density over positions (uniform within a bin); the
    boundaries are that density's quantiles. Equal-width ranges would instead vary in size
    by the sampling noise of how many documents fall in each.
    """
    starts, ends, masses = [], [], []
    for domain, rate in rates.items():
        if rate <= 0:
            continue
        histogram = np.asarray(histograms[domain], dtype=np.float64)
        bins = len(histogram)
        low = np.arange(bins) / bins
        for copy in range(int(np.ceil(rate))):
            high = np.minimum(low + 1 / bins, rate - copy)  # the last copy covers u < frac(rate) only
            share = np.clip((high - low) * bins, 0, 1)
            keep = share > 0
            starts.append((low[keep] + copy) / rate)
            ends.append((high[keep] + copy) / rate)
            masses.append(histogram[keep] * share[keep])
    bounds = np.linspace(0.0, 1.0, num_shards + 1)
    if not starts or num_shards == 1:
        return bounds
    start, end, mass = np.concatenate(starts), np.concatenate(ends), np.concatenate(masses)
    total = mass.sum()
    if total <= 0:
        return bounds

    def tokens_below(x: np.ndarray) -> np.ndarray:
        fraction = np.clip((x[:, None] - start) / np.maximum(end - start, 1e-300), 0, 1)
        return fraction @ mass

    wanted = np.arange(1, num_shards) / num_shards * total
    lo, hi = np.zeros(num_shards - 1), np.ones(num_shards - 1)
    for _ in range(60):  # bisection, all cut points at once
        mid = (lo + hi) / 2
        below = tokens_below(mid) < wanted
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    bounds[1:-1] = (lo + hi) / 2
    return bounds


def expand_copies(u: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(document index, copy number) of every copy, documents in order."""
    counts = copy_counts(u, rates)
    doc = np.repeat(np.arange(len(u)), counts)
    starts = np.cumsum(counts) - counts
    copy = np.arange(len(doc)) - np.repeat(starts, counts)
    return doc, copy


def synthetic_domains(spec: Any) -> list[str]:
    """The synthetic domains of a job: ``synthetic_domains`` and a generation job's own."""
    own = {spec.generate.domain} if spec.generate is not None else set()
    return sorted(set(spec.stages.mix.synthetic_domains) | own)


def synthetic_share(spec: Any, realized: dict[str, int]) -> tuple[list[str], float]:
    """The synthetic domains of a job and their share of the realized amounts (tokens or
    text bytes per domain)."""
    synthetic = set(synthetic_domains(spec))
    total = sum(realized.values())
    share = sum(v for d, v in realized.items() if d in synthetic) / total if total else 0.0
    return sorted(synthetic), share


def synthetic_share_warnings(spec: Any, share: float, previous: dict[str, Any] | None) -> list[str]:
    """``max_synthetic_share``'s warning for a snapshot, given the previous snapshot's
    ``{"snapshot", "synthetic_share"}`` (None for a first snapshot)."""
    limit = spec.stages.mix.max_synthetic_share
    if limit is None or share <= limit:
        return []
    before = previous.get("synthetic_share") if previous else None
    if before is not None and share <= before:
        return []
    since = f", up from {before:.1%} in snapshot {previous['snapshot']}" if before is not None else ""
    return [
        f"synthetic data is {share:.1%} of this snapshot{since}, past stages.mix.max_synthetic_share {limit:g}: "
        "add real data or lower the synthetic domains' weights before training on it"
    ]
