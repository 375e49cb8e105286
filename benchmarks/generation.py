"""Generation request throughput through one real OpenAI-compatible server: Refinery's path
(the generate phase's Sender: requests split over Ray tasks, each an ``OpenAIBackend`` with
the response cache) against a plain asyncio loop of the ``openai`` client (``AsyncOpenAI``
with a semaphore, in the trainers' venv), at the same number of requests in flight.

The server is ``transformers serve`` (trainers' venv) on 127.0.0.1 with a small Llama
(tests/helpers/tiny_llm.py, random weights: every answer runs to ``max_tokens``, so each
request costs the same). Rounds alternate the two sides with new prompts each time (no
cache hits); each side runs in a fresh process every round (Refinery's with its own local Ray),
timed from its first request to its last answer; the figure is the median ratio of requests
per second.

    python -m benchmarks generation --requests 240 --in-flight 8 --rounds 3
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

TRAINERS_BIN = common.ROOT / "benchmarks" / ".venv-trainers" / "bin"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

BASELINE = r"""
import asyncio, json, sys, time
from openai import AsyncOpenAI

base_url, model, in_flight, max_tokens, prompts_file, out = sys.argv[1:7]
prompts = json.load(open(prompts_file))

async def main():
    client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=6, timeout=120)
    gate = asyncio.Semaphore(int(in_flight))

    async def one(i, prompt):
        async with gate:
            reply = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], temperature=0.0,
                max_tokens=int(max_tokens), seed=i,
            )
            return reply.choices[0].message.content

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    seconds = time.perf_counter() - started
    json.dump({"seconds": seconds, "answers": len([a for a in answers if a is not None])}, open(out, "w"))

asyncio.run(main())
"""


def start_server(tmp: Path) -> tuple[subprocess.Popen, str, str]:
    import urllib.request

    text = tmp / "text.txt"
    corpus = common.sample_corpus(tmp / "corpus", 500, 1, 3)
    import pyarrow.parquet as pq

    text.write_text(
        "\n".join(t for f in sorted(corpus.glob("*.parquet")) for t in pq.read_table(f)["text"].to_pylist())
    )
    model = tmp / "model"
    env = {**os.environ, **OFFLINE}
    subprocess.run(
        [str(TRAINERS_BIN / "python"), str(common.ROOT / "tests" / "helpers" / "tiny_llm.py"), str(text), str(model)],
        check=True,
        env=env,
        capture_output=True,
    )
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp / "server.log", "wb")
    server = subprocess.Popen(
        [str(TRAINERS_BIN / "transformers"), "serve", str(model), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    for _ in range(360):
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                return server, base_url, str(model)
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"the server did not start: {(tmp / 'server.log').read_text()[-2000:]}")


def refinery_side(base_url: str, model: str, prompts: list[str], in_flight: int, max_tokens: int, out: Path) -> float:
    """Seconds for the generate phase's Sender to get every answer (a fresh cache: no hits)."""
    from pipeline.config import load_job_spec
    from pipeline.core.progress import Progress
    from pipeline.generation.client import ChatRequest
    from pipeline.phases.generate import Sender

    workers = common.cores()
    spec = load_job_spec(
        {
            "name": "generation-bench",
            "output": {"uri": str(out), "kind": "documents", "documents": {"format": "jsonl.gz"}},
            "generate": {
                "backend": {"base_url": base_url, "model": model, "concurrency": max(1, in_flight // workers)},
                "sampling": {"temperature": 0.0, "max_tokens": max_tokens},
                "method": "self_instruct",
                "self_instruct": {"seed_tasks": "unused"},
                "workers": workers,
            },
            "stages": {},
        },
        check_files=False,
    )
    sampling = spec.generate.sampling.request_fields()
    requests = [ChatRequest(({"role": "user", "content": p},), sampling, seed=i) for i, p in enumerate(prompts)]
    sender = Sender(spec, 1, workers, Progress(quiet=True))
    started = time.perf_counter()
    answers = sender(requests)
    seconds = time.perf_counter() - started
    failed = [a for a in answers if a.error]
    if failed or sender.stats.cache_hits:
        raise SystemExit(f"refinery side: {len(failed)} failed ({failed[:1]}), {sender.stats.cache_hits} cache hits")
    return seconds


def refinery_process(
    base_url: str, model: str, prompts: list[str], in_flight: int, max_tokens: int, work: Path
) -> float:
    """``refinery_side`` in a fresh process that starts its own Ray, as a job would."""
    (work / "prompts.json").write_text(json.dumps(prompts))
    out = work / "refinery.json"
    args = {"base_url": base_url, "model": model, "in_flight": in_flight, "max_tokens": max_tokens,
            "prompts": str(work / "prompts.json"), "cache": str(work / "out"), "result": str(out)}  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "benchmarks.generation", REFINERY_SIDE, json.dumps(args)], check=True, cwd=common.ROOT
    )
    return json.loads(out.read_text())["seconds"]


def _refinery_side_main(args: dict) -> None:
    common.start_ray()
    prompts = json.loads(Path(args["prompts"]).read_text())
    seconds = refinery_side(
        args["base_url"], args["model"], prompts, args["in_flight"], args["max_tokens"], Path(args["cache"])
    )
    Path(args["result"]).write_text(json.dumps({"seconds": seconds}))


REFINERY_SIDE = "--refinery-side"


def baseline_side(base_url: str, model: str, prompts: list[str], in_flight: int, max_tokens: int, work: Path) -> float:
    (work / "prompts.json").write_text(json.dumps(prompts))
    (work / "baseline.py").write_text(BASELINE)
    out = work / "baseline.json"
    subprocess.run(
        [str(TRAINERS_BIN / "python"), str(work / "baseline.py"), base_url, model, str(in_flight), str(max_tokens), str(work / "prompts.json"), str(out)],
        check=True,
    )  # fmt: skip
    result = json.loads(out.read_text())
    if result["answers"] != len(prompts):
        raise SystemExit(f"baseline: {result['answers']} of {len(prompts)} answered")
    return result["seconds"]


def main(argv: list[str]) -> None:
    if argv[:1] == [REFINERY_SIDE]:
        return _refinery_side_main(json.loads(argv[1]))
    parser = common.parser("generation", __doc__)
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--in-flight", type=int, default=8, help="requests in flight on each side")
    parser.add_argument("--max-tokens", type=int, default=16)
    common.add_rounds(parser)
    args = parser.parse_args(argv)
    if not (TRAINERS_BIN / "transformers").exists():
        raise SystemExit(f"{TRAINERS_BIN}/transformers is missing: `make trainer-readers` builds the trainers' venv")
    with common.scratch() as tmp:
        server, base_url, model = start_server(tmp)
        try:
            rounds = []
            for r in range(args.rounds):
                prompts = [f"Round {r}, request {i}: write one sentence about rivers." for i in range(args.requests)]
                work = tmp / f"round-{r}"
                work.mkdir()
                sides = {}
                order = ["baseline", "refinery"] if r % 2 == 0 else ["refinery", "baseline"]
                for side in order:
                    if side == "baseline":
                        sides[side] = baseline_side(base_url, model, prompts, args.in_flight, args.max_tokens, work)
                    else:
                        sides[side] = refinery_process(base_url, model, prompts, args.in_flight, args.max_tokens, work)
                rounds.append({side: args.requests / seconds for side, seconds in sides.items()})
                print(json.dumps({"round": r, "requests_per_s": rounds[-1]}), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    ratios = [r["refinery"] / r["baseline"] for r in rounds]
    figures = {
        "requests": args.requests,
        "in_flight": args.in_flight,
        "max_tokens": args.max_tokens,
        "rounds": rounds,
        "baseline_requests_per_s": statistics.median(r["baseline"] for r in rounds),
        "refinery_requests_per_s": statistics.median(r["refinery"] for r in rounds),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "rounds"}), flush=True)
    common.write_result("generation", argv, figures)


if __name__ == "__main__":
    main(sys.argv[1:])
