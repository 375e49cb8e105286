"""Near-duplicate removal: MinHash signatures, LSH, verified edges, connected components."""

from pipeline.core.charts import Chart
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
            "cluster_sizes": run.dedup.cluster_sizes.get("near_dedup", {}),
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
        buckets = cluster_size_buckets(settings["cluster_sizes"])
        if buckets:
            lines += [
                "",
                "Near-duplicate clusters this run formed, by size (the document kept and those removed for it):",
                "",
                "| size | " + " | ".join(buckets) + " |",
                "|---|" + "---:|" * len(buckets),
                "| clusters | " + " | ".join(f"{n:,}" for n in buckets.values()) + " |",
            ]
        return ReportSection("near_dedup", settings, lines)

    @classmethod
    def report_charts(cls, report: dict) -> list[Chart]:
        settings = report.get("near_dedup")
        if not settings:
            return []
        bands, rows_per_band = settings["bands"], settings["rows"]
        rows = [
            {"Jaccard similarity": s, "P(candidate)": round(1 - (1 - s**rows_per_band) ** bands, 6)}
            for s in (i / 40 for i in range(41))
        ]
        spec = {
            "layer": [
                {
                    "mark": {"type": "line", "point": True, "tooltip": True},
                    "encoding": {
                        "x": {"field": "Jaccard similarity", "type": "quantitative", "scale": {"domain": [0, 1]}},
                        "y": {"field": "P(candidate)", "type": "quantitative", "scale": {"domain": [0, 1]}},
                    },
                },
                {
                    "data": {"values": [{"threshold": settings["threshold"]}]},
                    "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#b22"},
                    "encoding": {"x": {"field": "threshold", "type": "quantitative"}},
                },
            ],
            "height": 200,
        }
        caption = (
            f"{settings['bands']} bands x {settings['rows']} rows of {settings['num_perm']} permutations; "
            f"the dashed line is the threshold {settings['threshold']}."
        )
        charts = [Chart("lsh_s_curve", "Near duplicates: the LSH S-curve", spec, caption, rows)]
        buckets = cluster_size_buckets(settings.get("cluster_sizes") or {})
        if buckets:
            sizes = [{"cluster size": size, "clusters": n} for size, n in buckets.items()]
            spec = {
                "mark": {"type": "bar", "tooltip": True},
                "encoding": {
                    "x": {"field": "cluster size", "type": "ordinal", "sort": list(buckets)},
                    "y": {"field": "clusters", "type": "quantitative"},
                },
                "height": 200,
            }
            caption = (
                "Clusters of near duplicates this run formed: the document kept and those removed for it "
                f"({sum(buckets.values()):,} clusters, {sum(_removed(settings['cluster_sizes'])):,} documents removed)."
            )
            charts.append(Chart("near_dup_cluster_sizes", "Near duplicates: cluster sizes", spec, caption, sizes))
        return charts


_SIZE_BUCKETS = [(2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 100), (101, 1000), (1001, None)]


def cluster_size_buckets(sizes: dict[str, int]) -> dict[str, int]:
    """Clusters by size (``{"2": n, ...}``) grouped into the chart's buckets; empty ones left out."""
    out = {}
    for low, high in _SIZE_BUCKETS:
        n = sum(c for s, c in sizes.items() if int(s) >= low and (high is None or int(s) <= high))
        if n:
            out[str(low) if low == high else f"{low}+" if high is None else f"{low}-{high}"] = n
    return out


def _removed(sizes: dict[str, int]) -> list[int]:
    return [(int(s) - 1) * c for s, c in sizes.items()]
