"""URL blocklists (UT1 directories and domain lists): documents whose host, a parent domain
of it, or a URL prefix is listed are annotated with the category, or rejected."""

from typing import Any

from pipeline.core.markers import RunRecord
from pipeline.stages.base import Capability, ReportSection
from pipeline.stages.registry import register
from pipeline.stages.url_blocklist.blocklist import NO_MATCH, Blocklist, compile_blocklist
from pipeline.stages.url_blocklist.config import BlocklistSource, UrlBlocklistConfig, ut1_categories
from pipeline.stages.url_blocklist.report import blocklist_report, render_markdown
from pipeline.stages.url_blocklist.stage import REASON_PREFIX, URL_BLOCKLIST_CATEGORY, UrlBlocklistCheck
from pipeline.stages.url_blocklist.store import blocklist_key, load_blocklist, prepare_blocklist, save_blocklist
from pipeline.stages.url_blocklist.urls import url_hosts, url_paths

__all__ = [
    "NO_MATCH",
    "REASON_PREFIX",
    "URL_BLOCKLIST_CATEGORY",
    "Blocklist",
    "BlocklistSource",
    "UrlBlocklistCheck",
    "UrlBlocklistConfig",
    "blocklist_key",
    "compile_blocklist",
    "load_blocklist",
    "prepare_blocklist",
    "save_blocklist",
    "url_hosts",
    "url_paths",
    "ut1_categories",
]


@register
class UrlBlocklist(Capability):
    key = "url_blocklist"
    config = UrlBlocklistConfig
    order = 5  # before every other stage: it reads only the URL
    hashed_when_unused = False  # added after outputs existed: installing it redoes no work
    document_stage = UrlBlocklistCheck

    @classmethod
    def prepare_job(cls, spec, config: UrlBlocklistConfig, progress) -> dict[str, Any]:
        """The lists compiled once, where every worker maps them."""
        return prepare_blocklist(spec, progress)

    @classmethod
    def report_section(cls, config: UrlBlocklistConfig, run: RunRecord) -> ReportSection:
        rejected: dict[str, int] = {}
        for marker in run.annotate:
            for reason, n in marker.rejected.get(cls.key, {}).items():
                rejected[reason] = rejected.get(reason, 0) + n
        report = blocklist_report(config, run.prepared[cls.key], rejected, run.kept_counts(cls.key))
        return ReportSection(cls.key, report, render_markdown(report))
