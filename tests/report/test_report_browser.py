"""report.html in a real headless browser (Debian's chromium, driven by Playwright): it
opens from file:// with no console error and no network request, and every chart is drawn."""

import shutil
from pathlib import Path

import pytest

from tests.report.test_report_page import _specs, two_snapshots  # noqa: F401 (the module fixture)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# what a sandboxed root process needs, and no background traffic to Google's services
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Debian's chromium is not installed: `make test` installs it with apt-get where it runs as root "
            "(apt-get install chromium)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is a dev dependency: `make test` installs it"
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


def test_the_page_draws_every_chart_offline(browser, two_snapshots, tmp_path):  # noqa: F811
    out, _, second = two_snapshots
    page_file = out / "report.html"
    specs = _specs(page_file.read_text())
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    page.evaluate("() => window.chartsDrawn.then(views => views.length)")
    assert errors == []
    assert requests == [page_file.as_uri()]  # the page itself, nothing else
    for key in specs:
        marks = page.locator(f"#chart-{key} svg g.role-mark > *").count()
        assert marks > 0, f"chart {key} drew nothing"
    # the funnel draws one bar per row of its data
    funnel_bars = page.locator("#chart-funnel svg g.mark-rect.role-mark path").count()
    assert funnel_bars == len(specs["funnel"]["data"]["values"])
    assert "Counts balance" in page.inner_text("#balance")
    for stage, reasons in second.report["rejected"].items():
        for reason in reasons:
            assert page.locator("#rejects + table td", has_text=reason).count() >= 1
            group = page.locator(f'section.examples[data-stage="{stage}"][data-reason="{reason}"]')
            assert group.count() == 1 and group.is_visible()
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()
