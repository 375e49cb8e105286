"""Near-duplicate removal: MinHash signatures, LSH, verified edges, connected components."""

from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.near_dedup.config import NearDedupConfig
from pipeline.stages.near_dedup.lsh import NearDuplicates
from pipeline.stages.near_dedup.stage import LSH_BANDS, MinHashSignatures, dedup_units
from pipeline.stages.registry import register

__all__ = ["LSH_BANDS", "MinHashSignatures", "NearDedupConfig", "NearDuplicates", "dedup_units"]


@register
class NearDedup(Capability):
    key = "near_dedup"
    config = NearDedupConfig
    order = 70
    document_stage = MinHashSignatures
    global_stage = NearDuplicates

    @classmethod
    def report_section(cls, config: NearDedupConfig, run: RunRecord) -> ReportSection:
        bands, rows = config.banding()
        curve = config.s_curve()
        settings = {
            "threshold": config.threshold,
            "num_perm": config.num_perm,
            "bands": bands,
            "rows": rows,
            "candidate_probability": curve,
        }
        lines = [
            "## Near-duplicate LSH",
            "",
            f"Threshold {config.threshold}, {config.num_perm} permutations, {bands} bands x "
            f"{rows} rows. Probability that a pair becomes a candidate, by Jaccard similarity:",
            "",
            "| similarity | " + " | ".join(curve) + " |",
            "|---|" + "---:|" * len(curve),
            "| P(candidate) | " + " | ".join(f"{p:.4f}" for p in curve.values()) + " |",
        ]
        return ReportSection("near_dedup", settings, lines)
