"""The run report's page: ``refinery report OUTPUT`` (report.html and the chart SVGs rebuilt
from a run's report.json) on an existing output, in a fresh process: wall time, the
process's peak RSS, and the page's size.

    python -m benchmarks report-page --output out/quickstart [--repeats 3]

Point it at the output of a large run (e.g. ``python -m benchmarks sft-job
--conversations 1000000`` leaves one) to check the issue's bounds: under 10 s, under 500 MB,
a page under 10 MB.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks import common

_CHILD = """
import json, resource, sys, time
started = time.perf_counter()
from pipeline.report_page import rebuild_page
page = rebuild_page(sys.argv[1], None, None)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "page": page}))
"""


def main(argv: list[str]) -> None:
    parser = common.parser("report-page", __doc__)
    parser.add_argument("--output", required=True, help="a run's output directory (with report.json)")
    common.add_repeats(parser)
    args = parser.parse_args(argv)
    output = Path(args.output)
    report = json.loads((output / "report.json").read_text())
    runs = []
    for _ in range(args.repeats):
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(output)], capture_output=True, text=True, check=True, cwd=common.ROOT
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    page = Path(runs[-1]["page"])
    charts = sorted(p.name for p in (page.parent / "report_charts").glob("*.svg"))
    common.write_result(
        "report-page",
        argv,
        {
            "output": str(output),
            "input_documents": report["totals"]["input_docs"],
            "output_shards": report["totals"]["output_shards"],
            "median_seconds": statistics.median(r["seconds"] for r in runs),
            "seconds": [round(r["seconds"], 3) for r in runs],
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
            "page_bytes": page.stat().st_size,
            "charts": charts,
        },
    )
