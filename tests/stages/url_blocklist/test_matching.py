"""What a list blocks: hosts and their parent domains, never at or above a public suffix,
IP addresses whole, UT1 URL prefixes at a ``/`` boundary, ``www.`` ignored; equal to a
plain-Python reference on randomized URLs."""

import random

import pyarrow as pa
import pytest

from pipeline.stages.url_blocklist import URL_BLOCKLIST_CATEGORY, UrlBlocklistCheck, UrlBlocklistConfig
from pipeline.stages.url_blocklist.lists import is_public_suffix, public_suffix_rules
from tests.stages.url_blocklist.conftest import ReferenceBlocklist, url_docs, write_ut1


def _stage(lists: list[dict], action: str = "annotate") -> UrlBlocklistCheck:
    stage = UrlBlocklistCheck(UrlBlocklistConfig(enabled=True, lists=lists, action=action))
    stage.setup()
    return stage


def _categories(stage: UrlBlocklistCheck, urls: list[str | None]) -> list[str | None]:
    return stage.process(url_docs(urls)).table.column(URL_BLOCKLIST_CATEGORY).to_pylist()


def _domains_list(tmp_path, lines: list[str], category: str = "custom", name: str = "extra.txt") -> dict:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return {"uri": str(path), "format": "domains", "category": category}


def test_a_domain_blocks_itself_and_its_subdomains_only(tmp_path):
    stage = _stage([_domains_list(tmp_path, ["example.com"])])
    blocked = [
        "http://a.b.example.com:8080/x?y",
        "https://EXAMPLE.com.",
        "http://www.example.com",
        "https://user:secret@Example.COM/path#frag",
        "//example.com/scheme-relative",
        "example.com/no/scheme",
    ]
    passed = [
        "http://notexample.com/",
        "http://example.com.evil.org/",
        "http://example.co/",
        "http://evil.org/example.com",
        "http://evil.org/?u=http://example.com/",
        "http://example.com@evil.org/",
    ]
    assert _categories(stage, blocked + passed) == ["custom"] * len(blocked) + [None] * len(passed)


def test_null_empty_and_unparseable_urls_are_not_blocked(tmp_path):
    stage = _stage([_domains_list(tmp_path, ["example.com"])])
    urls = [None, "", "   ", "not a url at all", "http://", "http:///example.com", "http://exa mple.com/"]
    assert _categories(stage, urls) == [None] * len(urls)
    assert stage.process(url_docs([])).table.column(URL_BLOCKLIST_CATEGORY).to_pylist() == []


def test_public_suffix_entries_are_skipped_counted_and_block_nothing(tmp_path):
    entries = [
        "co.uk",
        "com",
        "uk",
        "foo.ck",
        "www.ck",
        "kawasaki.jp",
        "x.kawasaki.jp",
        "city.kawasaki.jp",
        "bbc.co.uk",
    ]
    stage = _stage([_domains_list(tmp_path, entries)])
    summary = stage.blocklist.summary
    # co.uk, com, uk, foo.ck (*.ck), x.kawasaki.jp (*.kawasaki.jp); not www.ck (!www.ck) nor kawasaki.jp
    assert summary["public_suffixes_skipped"] == 5
    assert summary["domains"] == 4 and summary["files"][0]["public_suffixes"] == 5
    assert summary["public_suffix_examples"][:2] == ["co.uk", "com"]
    urls = ["http://anything.co.uk/", "http://google.com/", "http://bar.foo.ck/", "http://other.ck/"]
    assert _categories(stage, urls) == [None] * 4
    urls = ["http://news.bbc.co.uk/", "http://www.ck/", "http://a.city.kawasaki.jp/", "http://kawasaki.jp/"]
    assert _categories(stage, urls) == ["custom"] * 4


def test_public_suffix_rules_agree_with_tldextract():
    import tldextract

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    exact, wildcard, exception = (r.to_pylist() for r in public_suffix_rules())
    rng = random.Random(3)
    domains = rng.sample(exact, 300) + [f"x{i}.{w}" for i, w in enumerate(wildcard)] + [f"e.{e}" for e in exception]
    domains += exception + [f"example.{s}" for s in rng.sample(exact, 300)] + ["localhost", "1.2.3.4"]
    ours = is_public_suffix(pa.array(domains)).tolist()
    theirs = [("." not in d or extract(d).suffix == d) and d != "1.2.3.4" for d in domains]
    assert ours == theirs


def test_ip_hosts_match_only_whole(tmp_path):
    stage = _stage([_domains_list(tmp_path, ["1.2.3.4", "2001:db8::1", "3.4"])])
    urls = ["http://1.2.3.4:8080/x", "http://[2001:DB8::1]/", "http://5.1.2.3.4/", "http://1.2.3.45/", "http://9.3.4/"]
    assert _categories(stage, urls) == ["custom", "custom", None, None, None]


def test_internationalized_names_match_their_idna_form(tmp_path):
    stage = _stage([_domains_list(tmp_path, ["bücher.de", "xn--caf-dma.fr"])])
    urls = ["http://shop.BÜCHER.de/x", "http://xn--bcher-kva.de/", "http://café.fr/", "http://bucher.de/"]
    assert _categories(stage, urls) == ["custom", "custom", "custom", None]


def test_ut1_url_prefixes_match_at_a_slash_boundary(tmp_path):
    root = write_ut1(
        tmp_path / "ut1",
        {"adult": {"urls": ["example.com/some/path", "www.news.net/a/", "http://Shop.org/Cart?id=3", "just.host"]}},
    )
    stage = _stage([{"uri": str(root), "format": "ut1"}])
    blocked = [
        "http://www.example.com/some/path/page.html",
        "http://example.com/some/path",
        "http://example.com/some/path/",
        "https://EXAMPLE.com/Some/Path?q=1",
        "http://news.net/a/b",
        "http://www.news.net/a",
        "http://shop.org/cart/checkout",
        "http://just.host/anything",
        "http://www.just.host",
    ]
    passed = [
        "http://example.com/some/pathology",
        "http://example.com/some",
        "http://example.com/",
        "http://sub.example.com/some/path",
        "http://example.com/other/some/path",
        "http://news.net/ab",
        "http://sub.just.host/",
        "http://evil.org/example.com/some/path",
    ]
    assert _categories(stage, blocked + passed) == ["adult"] * len(blocked) + [None] * len(passed)


def test_categories_filter_order_and_precedence(tmp_path):
    root = write_ut1(
        tmp_path / "ut1",
        {
            "adult": {"domains": ["both.com", "adult.com"], "urls": ["prefix.org/x"]},
            "gambling": {"domains": ["both.com", "casino.com", "sub.adult.com"]},
            "phishing": {"domains": ["phish.com"], "urls": ["prefix.org/x/y"]},
        },
    )
    extra = _domains_list(tmp_path, ["casino.com", "mine.net"], category="custom")
    urls = ["http://both.com/", "http://sub.adult.com/", "http://casino.com/", "http://phish.com/"]
    urls += ["http://prefix.org/x/y/z", "http://mine.net/"]

    every = _stage([{"uri": str(root), "format": "ut1"}, extra])
    assert every.blocklist.categories == ["adult", "gambling", "phishing", "custom"]
    # a URL blocked by several categories takes the first: sub.adult.com is under adult.com
    assert _categories(every, urls) == ["adult", "adult", "gambling", "phishing", "adult", "custom"]

    picked = _stage([extra, {"uri": str(root), "format": "ut1", "categories": ["phishing", "gambling"]}])
    assert picked.blocklist.categories == ["custom", "phishing", "gambling"]
    assert _categories(picked, urls) == ["gambling", "gambling", "custom", "phishing", "phishing", "custom"]
    assert picked.blocklist.summary["categories"] == {
        "custom": {"domains": 2, "urls": 0},
        "phishing": {"domains": 1, "urls": 1},
        "gambling": {"domains": 2, "urls": 0},  # casino.com is kept under custom
    }


def test_reject_names_the_category_and_annotate_rejects_nothing(tmp_path):
    root = write_ut1(tmp_path / "ut1", {"adult": {"domains": ["adult.com"]}, "gambling": {"domains": ["bet.com"]}})
    urls = ["http://adult.com/", "http://ok.org/", None, "http://www.bet.com/x"]
    docs = url_docs(urls)
    reject = _stage([{"uri": str(root), "format": "ut1"}], action="reject")
    out = reject.process(docs)
    assert out.reject_reasons.to_pylist() == ["blocked_adult", None, None, "blocked_gambling"]
    kept, rejected = reject(docs)
    assert kept.column("id").to_pylist() == ["d1", "d2"]
    assert rejected.column("reject_stage").to_pylist() == ["url_blocklist"] * 2
    assert rejected.column("reject_reason").to_pylist() == ["blocked_adult", "blocked_gambling"]
    assert reject.count_kept(kept) == {}

    annotate = _stage([{"uri": str(root), "format": "ut1"}], action="annotate")
    kept, rejected = annotate(docs)
    assert rejected.num_rows == 0 and kept.num_rows == 4
    assert kept.column(URL_BLOCKLIST_CATEGORY).to_pylist() == ["adult", None, None, "gambling"]
    assert annotate.count_kept(kept) == {"adult": 1, "gambling": 1}


def test_malformed_lines_are_counted_with_their_numbers_never_fatal(tmp_path):
    domains = tmp_path / "domains.txt"
    lines = [b"good.com", b"# a comment", b"", b"bad host.com", b"a..b.com", b"x" * 64 + b".com", b"has/slash.com"]
    lines += [b"  spaced.org  \r", b"bad\xff\xfe.com", b"under_score.net", b"port.com:80", b"-"]
    lines += [b"a." * 130 + b"com", b"caf\xc3\xa9.fr"]
    domains.write_bytes(b"\n".join(lines))
    urls = tmp_path / "ut1" / "adult" / "urls"
    urls.parent.mkdir(parents=True)
    urls.write_bytes(b"ok.org/path\n/no/host\nwith space.org/x\nok.org/also fine?\n\n#x\nhost.org:99/x\nwww./x\n")
    stage = _stage(
        [{"uri": str(domains), "format": "domains", "category": "c"}, {"uri": str(tmp_path / "ut1"), "format": "ut1"}]
    )
    first, second = stage.blocklist.summary["files"]
    assert first["lines"] == 14 and first["malformed"] == 7
    assert first["malformed_lines"] == [4, 5, 6, 7, 9]
    assert first["entries"] == 4  # good.com, spaced.org, under_score.net, xn--caf-dma.fr
    assert first["public_suffixes"] == 1  # "-": a single label
    assert second["lines"] == 8 and second["malformed"] == 4 and second["malformed_lines"] == [2, 3, 4, 7]
    assert stage.blocklist.summary["malformed_lines"] == 11
    urls = ["http://spaced.org/", "http://café.fr/", "http://ok.org/path/x", "http://bad host.com/"]
    assert _categories(stage, urls) == ["c", "c", "adult", None]


def _random_urls(rng: random.Random, names: list[str], n: int) -> list[str | None]:
    """URLs on listed names, their subdomains and parents, look-alikes and random hosts, with
    random case, www, ports, userinfo, paths, queries and fragments."""
    words = ["a", "b", "some", "path", "pathology", "x", "cart", "Some"]
    urls: list[str | None] = []
    for _ in range(n):
        roll = rng.random()
        base = rng.choice(names)
        if roll < 0.25:
            host = f"{rng.choice(['w', 'www', 'a.b', 'm'])}.{base}"
        elif roll < 0.35:
            host = base.split(".", 1)[-1]
        elif roll < 0.45:
            host = "not" + base
        elif roll < 0.55:
            host = f"{base}.evil.org"
        elif roll < 0.6:
            host = rng.choice(["1.2.3.4", "[2001:db8::1]", "5.1.2.3.4", "1.2.3.40"])
        elif roll < 0.62:
            urls.append(rng.choice([None, "", "garbage", "http://"]))
            continue
        else:
            host = base
        host = "".join(c.upper() if rng.random() < 0.2 else c for c in host)
        host += "." if rng.random() < 0.05 and not host.startswith("[") else ""
        userinfo = "user:pw@" if rng.random() < 0.05 else ""
        port = f":{rng.randint(1, 65535)}" if rng.random() < 0.1 else ""
        path = "".join("/" + rng.choice(words) for _ in range(rng.randint(0, 4)))
        path += "/" if rng.random() < 0.2 else ""
        tail = rng.choice(["", "", "?q=1", "#frag", "?a=/b#c"])
        urls.append(f"{rng.choice(['http', 'https', 'HTTP'])}://{userinfo}{host}{port}{path}{tail}")
    return urls


def test_equal_to_a_plain_python_reference_on_random_urls(tmp_path):
    rng = random.Random(5)
    labels = ["example", "shop", "news", "casino", "bet", "adult", "mail", "tube"]
    tlds = ["com", "org", "co.uk", "de", "net", "kawasaki.jp"]
    names = [f"{rng.choice(labels)}{i}.{rng.choice(tlds)}" for i in range(60)]
    lists = {
        "adult": {
            "domains": rng.sample(names, 20) + ["co.uk", "com", "1.2.3.4", "2001:db8::1", "bad line"],
            "urls": [f"{n}/{rng.choice(['some/path', 'a', 'x/b'])}" for n in rng.sample(names, 10)]
            + [f"www.{rng.choice(names)}/some"],
        },
        "gambling": {
            "domains": rng.sample(names, 20) + [f"w.{rng.choice(names)}"],
            "urls": [f"{n}/a/b" for n in rng.sample(names, 5)],
        },
    }
    root = write_ut1(tmp_path / "ut1", lists)
    extra = ["www." + rng.choice(names), rng.choice(names), "x.kawasaki.jp"]
    stage = _stage([{"uri": str(root), "format": "ut1"}, _domains_list(tmp_path, extra, category="extra")])
    reference = ReferenceBlocklist(
        [(c, kind, lists[c][kind]) for c in sorted(lists) for kind in ("domains", "urls")]
        + [("extra", "domains", extra)]
    )
    urls = _random_urls(rng, names, 4000)
    expected = [reference.match(u) for u in urls]
    assert sum(e is not None for e in expected) > 1000 and sum(e is None for e in expected) > 1000
    for start in range(0, len(urls), 1024):
        assert _categories(stage, urls[start : start + 1024]) == expected[start : start + 1024]


@pytest.mark.parametrize("category", ["bad/name", "spa ce", ""])
def test_category_names_are_checked(tmp_path, category):
    with pytest.raises(ValueError, match="String should match pattern"):
        UrlBlocklistConfig(enabled=True, lists=[_domains_list(tmp_path, ["a.com"], category=category)])
