"""URL blocklist: a deterministic UT1-style directory of ``--domains`` blocked domains (random-
looking registered domains under real TLDs, a tenth of them subdomains, in four categories)
and 1% as many URL prefixes, then:

1. compile time and file size (``compile_blocklist`` + ``save_blocklist``, what a job's
   ``prepare_job`` does), in a fresh process, with its peak RSS;
2. a worker's ``setup`` time and the memory it adds, for 2 worker processes that each map
   the compiled file and look up every URL: USS (pages only this worker holds), PSS and RSS,
   against 2 workers that each copy the arrays into private memory instead;
3. lookup throughput on one core: the stage's ``process`` on 1,024-row batches of ``--urls``
   URLs (the 20 real Common Crawl URLs of ../shared/data/cc_samples when present, the rest
   generated with paths like theirs; about 10% on listed domains and 1% under listed URL
   prefixes), against a naive loop (``urlsplit``, then every parent domain in a Python set
   of the domains, every ``/`` prefix in a set of the URL prefixes), each round in a fresh
   process, the order alternating; the set's memory; the two must block the same URLs.

    python -m benchmarks url_blocklist --domains 5000000 --urls 200000 --rounds 3
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psutil

from benchmarks import common

TLDS = ["com"] * 12 + ["net", "org", "org", "de", "ru", "co.uk", "fr", "info", "nl", "it", "pl", "com.br", "jp"]
TLDS += ["io", "biz", "xyz", "online", "cz", "ca", "com.au", "in", "ch", "be", "se", "es", "top", "site"]
CATEGORIES = {"adult": 0.6, "gambling": 0.2, "phishing": 0.15, "malware": 0.05}
SUBDOMAINS = [b"www.", b"m.", b"ads.", b"cdn.", b"shop.", b"video."]


def _rows_to_lines(columns: list[np.ndarray]) -> bytes:
    """Rows of NUL-padded byte columns, concatenated and joined into lines."""
    rows = np.concatenate([*columns, np.full((len(columns[0]), 1), ord("\n"), np.uint8)], axis=1).ravel()
    return rows[rows != 0].tobytes()


def _padded(values: list[bytes]) -> np.ndarray:
    matrix = np.zeros((len(values), max(map(len, values))), np.uint8)
    for i, value in enumerate(values):
        matrix[i, : len(value)] = np.frombuffer(value, np.uint8)
    return matrix


def registered_domains(n: int, seed: int) -> np.ndarray:
    """(n, width) NUL-padded bytes of random-looking registered domains (``k3xvq9.co.uk``)."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", np.uint8)
    width = 14
    label = alphabet[rng.integers(0, 36, (n, width))]
    label[:, 0] = alphabet[rng.integers(0, 26, n)]
    label[np.arange(width)[None, :] >= rng.integers(5, width + 1, n)[:, None]] = 0
    tlds = _padded([f".{t}".encode() for t in TLDS])[rng.integers(0, len(TLDS), n)]
    return np.concatenate([label, tlds], axis=1)


def write_lists(root: Path, domains: int, seed: int = 0) -> dict:
    """The UT1 directory: ``<category>/domains`` (a tenth of the entries subdomains) and a
    ``urls`` file of URL prefixes under other registered domains in the first category."""
    rng = np.random.default_rng(seed + 1)
    names = registered_domains(domains, seed)
    subdomain = _padded(SUBDOMAINS)[rng.integers(0, len(SUBDOMAINS), domains)]
    subdomain[rng.random(domains) >= 0.1] = 0
    counts = {}
    start = 0
    for number, (category, share) in enumerate(CATEGORIES.items()):
        end = domains if number == len(CATEGORIES) - 1 else start + int(domains * share)
        (root / category).mkdir(parents=True)
        (root / category / "domains").write_bytes(_rows_to_lines([subdomain[start:end], names[start:end]]))
        counts[category] = end - start
        start = end
    prefixes = max(1, domains // 100)
    hosts = registered_domains(prefixes, seed + 2)
    paths = _padded([b"/videos", b"/gallery/private", b"/forum/members", b"/casino", b"/free/download"])
    (root / "adult" / "urls").write_bytes(_rows_to_lines([hosts, paths[rng.integers(0, len(paths), prefixes)]]))
    return {"domains_per_category": counts, "url_prefixes": prefixes}


def _lines(path: Path) -> list[str]:
    return path.read_text().split()


def benchmark_urls(root: Path, n: int, seed: int = 3) -> tuple[list[str], int]:
    """``n`` URLs: the real Common Crawl ones, then generated, about 10% on listed domains
    (or a subdomain of one) and 1% under a listed URL prefix; and how many are real."""
    import random

    real = []
    samples = common.SHARED_DATA / "cc_samples"
    for path in sorted(samples.glob("*.jsonl")) if samples.exists() else []:
        real += [json.loads(line)["metadata"]["url"] for line in path.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    listed = _lines(root / "adult" / "domains")[:200_000] + _lines(root / "gambling" / "domains")[:50_000]
    prefixes = _lines(root / "adult" / "urls")
    unlisted = [r.decode() for r in _rows_to_lines([registered_domains(50_000, seed + 100)]).split()]
    words = ["2019", "blog", "news", "category", "the-best-way-to-travel", "index.php", "tag", "article", "p", "12"]
    urls = real[:n]
    while len(urls) < n:
        roll = rng.random()
        if roll < 0.01:
            prefix = rng.choice(prefixes)
            urls.append(f"https://{rng.choice(['', 'www.'])}{prefix}/{rng.choice(words)}.html")
            continue
        host = rng.choice(listed) if roll < 0.11 else rng.choice(unlisted)
        host = f"{rng.choice(['www.', 'blog.', 'm.', ''])}{host}" if rng.random() < 0.5 else host
        path = "/".join(rng.choice(words) for _ in range(rng.randint(0, 5)))
        query = rng.choice(["", "", "", "?id=42", "?utm_source=feed&page=2"])
        urls.append(f"{rng.choice(['http', 'https'])}://{host}/{path}{query}")
    return urls, min(len(real), n)


def _config(root: Path):
    from pipeline.stages.url_blocklist import UrlBlocklistConfig

    return UrlBlocklistConfig(enabled=True, lists=[{"uri": str(root), "format": "ut1"}], action="annotate")


def compile_in_child(root: str, out: str) -> dict:
    """Compiles and writes the lists (meant for a fresh process): seconds, peak RSS, sizes."""
    from pipeline.stages.url_blocklist import compile_blocklist, save_blocklist

    started = time.perf_counter()
    blocklist = compile_blocklist(_config(Path(root)))
    compiled = time.perf_counter()
    save_blocklist(blocklist, out)
    return {
        "compile_s": compiled - started,
        "write_s": time.perf_counter() - compiled,
        "peak_rss_bytes": common.peak_rss_bytes(),
        "file_bytes": Path(out).stat().st_size + Path(out).with_suffix(".json").stat().st_size,
        "summary": {k: v for k, v in blocklist.summary.items() if k != "files"},
    }


def _batches(urls: list[str]) -> list:
    """Documents with these URLs, in 1,024-row batches."""
    import pyarrow as pa

    from pipeline.core import columns as cols

    table = common.text_table([f"document {i}" for i in range(len(urls))])
    table = table.set_column(table.schema.get_field_index(cols.URL), cols.URL, pa.array(urls, pa.string()))
    return common.batches(table)


def _settled_memory():
    """This process's memory once freed Python objects and Arrow buffers are returned."""
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    return psutil.Process().memory_full_info()


def _mapping(path: str) -> dict:
    """Resident bytes of this process's mapping of ``path``: all, proportional, private, shared."""
    real = str(Path(path).resolve())
    for region in psutil.Process().memory_maps(grouped=True):
        if region.path == real:
            return {
                "rss": region.rss,
                "pss": region.pss,
                "private": region.private_clean + region.private_dirty,
                "shared": region.shared_clean + region.shared_dirty,
            }
    return {"rss": 0, "pss": 0, "private": 0, "shared": 0}


def worker_in_child(compiled: str, root: str, urls_file: str, copy: bool, barrier) -> dict:
    """One worker: set the stage up on the compiled file, look every URL up, touch every page
    of the lists; then, while the other worker holds its own, the memory it added (process
    USS, PSS, RSS) and what its mapping of the compiled file holds."""
    import pyarrow as pa

    from pipeline.stages.url_blocklist import Blocklist, UrlBlocklistCheck

    pa.set_cpu_count(1)
    batches = _batches(Path(urls_file).read_text().split("\n"))
    before = _settled_memory()
    started = time.perf_counter()
    stage = UrlBlocklistCheck(_config(Path(root)))
    stage.blocklist_uri = compiled
    stage.setup()
    if copy:  # what loading the file into memory would hold: a private copy per worker
        for name in Blocklist.ARRAYS:
            setattr(stage.blocklist, name, np.array(getattr(stage.blocklist, name)))
    setup_s = time.perf_counter() - started
    tables = [stage.process(batch).table for batch in batches]
    blocked = sum(t.num_rows - t.column("url_blocklist_category").null_count for t in tables)
    del tables
    for name in Blocklist.ARRAYS:
        int(getattr(stage.blocklist, name).view(np.uint8)[::4096].sum())
    barrier.wait()
    after = _settled_memory()
    mapping = _mapping(compiled)
    barrier.wait()
    return {
        "setup_s": setup_s,
        "blocked": blocked,
        **{f"{kind}_added_bytes": getattr(after, kind) - getattr(before, kind) for kind in ("uss", "pss", "rss")},
        "compiled_file_mapping_bytes": mapping,
    }


def workers(compiled: str, root: Path, urls_file: str, copy: bool) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(2)
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
            futures = [pool.submit(worker_in_child, compiled, str(root), urls_file, copy, barrier) for _ in range(2)]
            return [f.result() for f in futures]


class NaiveBlocklist:
    """The lists as Python sets; a URL is looked up one at a time."""

    def __init__(self, root: Path) -> None:
        self.domains: set[str] = set()
        self.prefixes: set[str] = set()
        for category in CATEGORIES:
            self.domains.update(line.strip().lower() for line in (root / category / "domains").open())
        self.prefixes.update(line.strip().lower().removeprefix("www.") for line in (root / "adult" / "urls").open())
        self.domains.discard("")
        self.prefixes.discard("")
        self.prefix_hosts = {prefix.split("/", 1)[0] for prefix in self.prefixes}

    def blocked(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        labels = host.split(".")
        if any(".".join(labels[i:]) in self.domains for i in range(len(labels) - 1)):
            return True
        host = host.removeprefix("www.")
        if host not in self.prefix_hosts:
            return False
        prefix = host
        for segment in parts.path.lower().split("/")[1:]:
            if prefix in self.prefixes:
                return True
            prefix += "/" + segment
        return prefix in self.prefixes


def naive_memory_in_child(root: str) -> dict:
    """The sets' build time and the memory they take (RSS growth; meant for a fresh process)."""
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.perf_counter()
    naive = NaiveBlocklist(Path(root))
    return {
        "build_s": time.perf_counter() - started,
        "rss_added_bytes": process.memory_info().rss - before,
        "entries": len(naive.domains) + len(naive.prefixes),
    }


def lookup_sides(compiled: str, root: str, urls_file: str) -> dict:
    """``{side: callable}`` for common.interleaved: the stage's ``process`` on 1,024-row
    batches, and the naive loop over the same URLs."""
    import pyarrow as pa

    from pipeline.stages.url_blocklist import UrlBlocklistCheck

    pa.set_cpu_count(1)
    urls = Path(urls_file).read_text().split("\n")
    batches = _batches(urls)
    stage = UrlBlocklistCheck(_config(Path(root)))
    stage.blocklist_uri = compiled
    stage.setup()
    naive = NaiveBlocklist(Path(root))
    return {
        "stage": lambda: [stage.process(b) for b in batches],
        "naive_set": lambda: [naive.blocked(u) for u in urls],
    }


def agreement(compiled: str, root: Path, urls: list[str]) -> dict:
    """How many URLs each side blocks, and on how many they disagree (must be none)."""
    from pipeline.stages.url_blocklist import UrlBlocklistCheck

    stage = UrlBlocklistCheck(_config(root))
    stage.blocklist_uri = compiled
    stage.setup()
    ours = [c is not None for b in _batches(urls) for c in stage.process(b).table["url_blocklist_category"].to_pylist()]
    naive = NaiveBlocklist(root)
    theirs = [naive.blocked(u) for u in urls]
    return {"stage": sum(ours), "naive_set": sum(theirs), "disagree": sum(a != b for a, b in zip(ours, theirs))}


def main(argv: list[str]) -> None:
    parser = common.parser("url_blocklist", __doc__)
    parser.add_argument("--domains", type=int, default=5_000_000, help="blocked domains in the generated list")
    parser.add_argument("--urls", type=int, default=200_000, help="URLs looked up")
    common.add_rounds(parser)
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    with common.scratch() as tmp:
        root = tmp / "ut1"
        generated = write_lists(root, args.domains)
        urls, real = benchmark_urls(root, args.urls)
        urls_file = tmp / "urls.txt"
        urls_file.write_text("\n".join(urls))
        compiled = str(tmp / "work" / "blocklist-bench.npy")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            built = pool.submit(compile_in_child, str(root), compiled).result()
            naive_memory = pool.submit(naive_memory_in_child, str(root)).result()
        print(
            f"compiled {built['summary']['domains']:,} domains and {built['summary']['urls']:,} URL prefixes in "
            f"{built['compile_s']:.2f} s (+{built['write_s']:.2f} s to write {built['file_bytes'] / 1e6:.1f} MB), "
            f"peak RSS {built['peak_rss_bytes'] / 2**30:.2f} GiB",
            flush=True,
        )
        mapped = workers(compiled, root, str(urls_file), copy=False)
        copied = workers(compiled, root, str(urls_file), copy=True)
        for label, pair in (("mapped", mapped), ("copied", copied)):
            added = {
                kind: ", ".join(f"{w[f'{kind}_added_bytes'] / 1e6:.1f}" for w in pair) for kind in ("uss", "pss", "rss")
            }
            maps = [w["compiled_file_mapping_bytes"] for w in pair]
            print(
                f"2 workers, {label}: setup {max(w['setup_s'] for w in pair) * 1e3:.1f} ms; added per worker "
                f"USS {added['uss']} MB, PSS {added['pss']} MB, RSS {added['rss']} MB; its mapping of the file: "
                + ", ".join(f"{m['rss'] / 1e6:.1f} MB resident ({m['private'] / 1e6:.1f} MB private)" for m in maps),
                flush=True,
            )
        agree = agreement(compiled, root, urls)
        comparison = common.interleaved(
            "benchmarks.url_blocklist:lookup_sides",
            {"compiled": compiled, "root": str(root), "urls_file": str(urls_file)},
            args.rounds,
            reference="naive_set",
            candidates=["stage"],
        )
    seconds = comparison["median_seconds"]
    figures = {
        "domains": args.domains,
        "lists": generated,
        "compile_s": built["compile_s"],
        "write_s": built["write_s"],
        "compile_peak_rss_bytes": built["peak_rss_bytes"],
        "compiled_file_bytes": built["file_bytes"],
        "compiled": built["summary"],
        "workers_mapped": mapped,
        "workers_copied": copied,
        "urls": len(urls),
        "real_urls": real,
        "mean_url_bytes": statistics.mean(len(u.encode()) for u in urls),
        "blocked": agree,
        "stage_urls_per_s_one_core": len(urls) / seconds["stage"],
        "naive_set_urls_per_s_one_core": len(urls) / seconds["naive_set"],
        "stage_vs_naive_set": comparison["ratio"]["stage"],
        "naive_set_memory": naive_memory,
        "rounds": comparison,
    }
    print(
        f"lookups, one core: stage {figures['stage_urls_per_s_one_core']:,.0f} URLs/s, naive set "
        f"{figures['naive_set_urls_per_s_one_core']:,.0f} URLs/s ({comparison['ratio']['stage']['median']:.2f}x); "
        f"naive sets hold {naive_memory['rss_added_bytes'] / 1e6:,.0f} MB; blocked {agree}",
        flush=True,
    )
    common.write_result("url_blocklist", argv, figures)


if __name__ == "__main__":
    main(sys.argv[1:])
