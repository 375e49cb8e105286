"""Reading a few documents of another shard's annotations reads only their row groups."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import columns as cols
from pipeline.phases.tokenize.phase import _row_groups_holding


def test_only_the_row_groups_that_hold_the_rows_are_read(tmp_path):
    path = tmp_path / "annotated.parquet"
    rows = np.arange(0, 100, 2)  # a shard's kept rows: gaps where its rejects were
    pq.write_table(pa.table({"text": [f"t{r}" for r in rows], cols.ROW: rows}), path, row_group_size=10)
    parquet = pq.ParquetFile(path)  # row groups hold rows 0-18, 20-38, 40-58, 60-78, 80-98
    assert _row_groups_holding(parquet, np.array([2, 41, 98])) == [0, 2, 4]
    assert _row_groups_holding(parquet, np.array([17])) == [0]  # within the group's range, though absent
    assert _row_groups_holding(parquet, np.array([101])) == []
    pq.write_table(pa.table({cols.ROW: rows}), path, row_group_size=10, write_statistics=False)
    assert _row_groups_holding(pq.ParquetFile(path), np.array([2])) == [0, 1, 2, 3, 4]  # no statistics: all
