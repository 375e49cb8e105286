"""Attach columns of one Dataset to the rows of another by key, with a sort-merge.

Requests and values are tagged, unioned and sorted by key, so each value row shares a
block with every request for its key. This uses Ray Data's task-based sort instead of
an actor-based hash join, and never collects either side on one node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import ray.data

_KEY = "__lookup_key"
_IS_VALUE = "__is_value"


def _tag(block: pa.Table, key: str, is_value: bool, own: pa.Schema, other: pa.Schema) -> pa.Table:
    n = block.num_rows
    columns = {_KEY: block.column(key).cast(pa.int64()), _IS_VALUE: pa.array([is_value] * n, pa.bool_())}
    for field in own:
        columns[field.name] = block.column(field.name)
    for field in other:
        columns[field.name] = pa.nulls(n, field.type)
    request_fields, value_fields = (other, own) if is_value else (own, other)
    schema = pa.schema([(_KEY, pa.int64()), (_IS_VALUE, pa.bool_()), *request_fields, *value_fields])
    return pa.table({f.name: columns[f.name] for f in schema}, schema=schema)


def _attach(block: pa.Table, request_schema: pa.Schema, value_schema: pa.Schema) -> pa.Table:
    if block.num_rows == 0:
        return pa.schema([*request_schema, *value_schema]).empty_table()
    keys = block.column(_KEY).to_numpy()
    is_value = block.column(_IS_VALUE).to_numpy(zero_copy_only=False)
    order = np.lexsort((~is_value, keys))  # within a key, the value row comes first
    keys, is_value = keys[order], is_value[order]
    starts = np.r_[True, keys[1:] != keys[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))
    requests = np.flatnonzero(~is_value)
    found = is_value[first[requests]]
    source_rows = pa.array(order[first[requests]])
    columns = {f.name: block.column(f.name).take(pa.array(order[requests])) for f in request_schema}
    for field in value_schema:
        values = block.column(field.name).take(source_rows)
        columns[field.name] = pc.if_else(pa.array(found), values, pa.nulls(len(requests), field.type))
    return pa.table(columns, schema=pa.schema([*request_schema, *value_schema]))


def lookup(requests: "ray.data.Dataset", request_key: str, request_schema: pa.Schema,
           values: "ray.data.Dataset", value_key: str, value_schema: pa.Schema) -> "ray.data.Dataset":
    """Rows of ``requests`` (``request_schema``) with the ``value_schema`` columns of the
    ``values`` row whose ``value_key`` equals their ``request_key``; null where none does.
    Value keys must be unique."""
    tagged_requests = requests.map_batches(
        _tag, fn_kwargs={"key": request_key, "is_value": False, "own": request_schema, "other": value_schema},
        batch_format="pyarrow",
    )
    tagged_values = values.map_batches(
        _tag, fn_kwargs={"key": value_key, "is_value": True, "own": value_schema, "other": request_schema},
        batch_format="pyarrow",
    )
    return tagged_requests.union(tagged_values).sort(_KEY).map_batches(
        _attach, fn_kwargs={"request_schema": request_schema, "value_schema": value_schema},
        batch_size=None, batch_format="pyarrow",
    )
