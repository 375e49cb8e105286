import pyarrow as pa
import pytest

from pipeline.sorted_lookup import lookup

pytestmark = pytest.mark.usefixtures("ray_local")


def test_lookup_attaches_values_and_nulls_for_missing_keys():
    import ray.data

    requests = pa.table({"want": pa.array([5, 3, 5, 99, 1], pa.int64()), "tag": ["a", "b", "c", "d", "e"]})
    values = pa.table({"key": pa.array([1, 3, 5, 7], pa.int64()), "name": ["one", "three", "five", "seven"]})
    result = lookup(
        ray.data.from_arrow([requests.slice(0, 2), requests.slice(2)]), "want", requests.schema,
        ray.data.from_arrow([values.slice(0, 1), values.slice(1)]), "key", pa.schema([("name", pa.string())]),
    ).take_all()
    assert sorted((r["tag"], r["want"], r["name"]) for r in result) == [
        ("a", 5, "five"), ("b", 3, "three"), ("c", 5, "five"), ("d", 99, None), ("e", 1, "one")]
