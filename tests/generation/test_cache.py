"""The response cache on its own: on local disk every answer is on disk once ``put`` returns
(a process SIGKILLed right after loses none); on an object store (moto's real S3 API on
127.0.0.1) answers go in immutable segments, and a reader loads every segment."""

from __future__ import annotations

import json
import subprocess
import sys

from pipeline.core.storage import StorageOptions
from pipeline.generation.cache import ResponseCache
from pipeline.generation.client import ChatResponse
from tests.helpers import REPO


def _answer(i: int) -> ChatResponse:
    return ChatResponse(f"key-{i}", text=f"answer {i}", finish_reason="stop", prompt_tokens=3, completion_tokens=i)


def test_a_process_killed_after_its_answers_loses_none_of_them(tmp_path):
    cache = str(tmp_path / "cache")
    script = f"""
import os, signal
from pipeline.generation.cache import ResponseCache
from pipeline.generation.client import ChatResponse
cache = ResponseCache({cache!r}, writer="w")
for i in range(5):
    cache.put(ChatResponse(f"key-{{i}}", text=f"answer {{i}}", completion_tokens=i))
os.kill(os.getpid(), signal.SIGKILL)
"""
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO)
    assert killed.returncode == -9
    reader = ResponseCache(cache)
    assert len(reader) == 5 and reader.get("key-4")["text"] == "answer 4"
    # a line cut short (the kill landed inside a write) is skipped; the whole lines count
    with open(tmp_path / "cache" / "w-000000.jsonl", "a") as segment:
        segment.write('{"key": "key-9", "te')
    assert len(ResponseCache(cache)) == 5 and not list((tmp_path / "cache").glob("*-000001.jsonl"))


def test_on_an_object_store_answers_go_in_segments_a_reader_loads(s3, s3_endpoint):
    s3.mkdir("cache-bucket")
    options = StorageOptions(endpoint_url=s3_endpoint)
    uri = "s3://cache-bucket/work/generate/cache"
    writer = ResponseCache(uri, options, writer="w", flush_every=2)
    for i in range(5):
        writer.put(_answer(i))
    assert sorted(p.rsplit("/", 1)[-1] for p in s3.ls(uri.removeprefix("s3://"))) == [
        "w-000000.jsonl",
        "w-000001.jsonl",
    ]
    assert len(ResponseCache(uri, options)) == 4  # the fifth is still in the writer's buffer
    writer.flush()
    reader = ResponseCache(uri, options)
    assert len(reader) == 5 and reader.get("key-3") == {
        "text": "answer 3", "finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": 3, "attempts": 0,
    }  # fmt: skip
    s3.invalidate_cache()
    lines = s3.cat(uri.removeprefix("s3://") + "/w-000002.jsonl").decode().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["key-4"]
