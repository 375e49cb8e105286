"""The document stage: each document's URL looked up in the compiled blocklist."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import columns as cols
from pipeline.core import storage
from pipeline.stages.base import DocumentStage, StageOutput
from pipeline.stages.url_blocklist.blocklist import NO_MATCH, compile_blocklist
from pipeline.stages.url_blocklist.store import compiled_uri, load_blocklist

if TYPE_CHECKING:
    from pipeline.config import JobSpec

URL_BLOCKLIST_CATEGORY = "url_blocklist_category"
REASON_PREFIX = "blocked_"


class UrlBlocklistCheck(DocumentStage):
    """Adds ``url_blocklist_category``: the first category (list order, then category order)
    whose domains or URL prefixes block the document's URL, null when none does or the URL
    is absent; with action ``reject`` such a document is rejected as ``blocked_<category>``."""

    name = "url_blocklist"
    blocklist_uri: str | None = None
    blocklist_options: storage.StorageOptions = storage.StorageOptions()

    def bind_job(self, spec: JobSpec) -> None:
        """Load the job's compiled lists, which the runner compiles once (``prepare_blocklist``)."""
        self.blocklist_uri = compiled_uri(spec)
        self.blocklist_options = spec.output.storage_options

    def setup(self) -> None:
        if self.blocklist_uri is None:  # a stage used on its own (tests, notebooks)
            self.blocklist = compile_blocklist(self.config)
        else:
            self.blocklist = load_blocklist(self.blocklist_uri, self.blocklist_options)
        categories = self.blocklist.categories
        self.category_names = pa.array(categories, pa.string())
        self.reasons = pa.array([REASON_PREFIX + c for c in categories], pa.string())

    def process(self, docs: pa.Table) -> StageOutput:
        codes = self.blocklist.match(docs.column(cols.URL))
        blocked = codes != NO_MATCH
        index = pa.array(np.where(blocked, codes, 0), pa.int32(), mask=~blocked)
        table = docs.append_column(pa.field(URL_BLOCKLIST_CATEGORY, pa.string()), self.category_names.take(index))
        if self.config.action == "annotate" or not blocked.any():
            return StageOutput(table)
        return StageOutput(table, self.reasons.take(index))

    def count_kept(self, kept: pa.Table) -> dict[str, int]:
        """Kept documents per category that blocks their URL (action ``annotate``)."""
        if URL_BLOCKLIST_CATEGORY not in kept.column_names:
            return {}
        found = kept.column(URL_BLOCKLIST_CATEGORY).drop_null()
        if not len(found):
            return {}
        counts = pc.value_counts(found)
        return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
