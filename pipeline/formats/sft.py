"""SFT Parquet shards of chat jobs (``pipeline.chat.packing.SFT_SCHEMA``), read back and checked."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

IGNORE_INDEX = -100


def decode(data: bytes) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All rows' tokens back to back, each row's length, and what is inconsistent: labels
    that are neither the token nor -100, masks that disagree with the labels, positions that
    do not restart at each conversation, conversation lengths that do not fill the row."""
    table = pq.read_table(io.BytesIO(data))
    problems = []
    ids = table.column("input_ids").combine_chunks()
    flat = ids.values.to_numpy() if len(ids) else np.zeros(0, np.int32)
    lengths = pa.compute.list_value_length(ids).to_numpy(zero_copy_only=False) if len(ids) else np.zeros(0, np.int64)
    labels = table.column("labels").combine_chunks()
    masks = table.column("assistant_masks").combine_chunks()
    positions = table.column("position_ids").combine_chunks()
    label_values = labels.values.to_numpy() if len(labels) else np.zeros(0, np.int32)
    mask_values = masks.values.to_numpy() if len(masks) else np.zeros(0, np.int8)
    if len(label_values) != len(flat) or len(mask_values) != len(flat):
        return flat, lengths, ["labels or assistant_masks differ in length from input_ids"]
    if np.any((label_values != flat) & (label_values != IGNORE_INDEX)):
        problems.append("a label is neither its token nor -100")
    if np.any((mask_values == 1) != (label_values != IGNORE_INDEX)):
        problems.append("assistant_masks disagree with labels")
    expected = []
    for row in table.column("seq_lengths").to_pylist():
        expected += [np.arange(n, dtype=np.int32) for n in row]
    expected_positions = np.concatenate(expected) if expected else np.zeros(0, np.int32)
    position_values = positions.values.to_numpy() if len(positions) else np.zeros(0, np.int32)
    if len(expected_positions) != len(flat) or np.any(expected_positions != position_values):
        problems.append("position_ids do not restart at each conversation of seq_lengths")
    return flat, lengths, problems
