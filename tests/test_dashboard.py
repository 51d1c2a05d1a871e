"""The dashboard ``isthmus serve`` shows at ``/``: its pages and files over FastAPI's
TestClient (no database needed), then end to end in Debian's headless Chromium (driven by
Playwright through ``executable_path``; ``playwright install`` is never run).

The browser test runs a real ``isthmus serve`` (with a bearer token) on a real migration: it
resolves two review items with clicks and checks both databases changed, watches the
progress bar of a migration slowed down by a trigger move, screenshots the overview (into
docs/dashboard.png, which the README shows, when ISTHMUS_UPDATE_SCREENSHOT is set), and
drills into a failing validation. Every
request the page makes must stay on the server; a console error fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from conftest import PgDatabases
from dialect_support import run_sql
from diff_support import ids as source_ids
from diff_support import uuid_of, value
from isthmus import commands
from isthmus.api import create_app
from isthmus.api.auth import TOKEN_VARIABLE
from isthmus.api.dashboard import STATIC_DIR
from isthmus.config import Config, load_config
from isthmus.urls import parse_url
from migrate_support import Setup, cli_env, isthmus_executable, make_setup, write_config

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "dashboard.png"
PAGES = ["/", "/review", "/reports", "/reports/latest", "/jobs/nightly", "/jobs/a%2Fb%20c"]
ASSETS = {
    "dashboard.js": "javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # an XML namespace name, never fetched


# -- pages and files, no database ---------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app on databases that are not there: pages and files need none."""
    directory = tmp_path_factory.mktemp("dashboard")
    path = write_config(
        directory / "isthmus.toml",
        parse_url(f"sqlite:///{directory / 'legacy.db'}"),
        parse_url("postgresql://isthmus@127.0.0.1:9/absent"),
    )
    with TestClient(create_app(load_config(path), token="t0ken")) as c:
        yield c


class Tags(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def test_every_page_is_the_same_shell_with_a_strict_policy(client: TestClient) -> None:
    shell = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.text == shell
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "connect-src 'self'" in policy and "'unsafe-inline'" not in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-cache"
    assert client.head("/").status_code == 200
    tags = Tags(shell).tags
    assert ("script", {"src": "/static/dashboard.js", "defer": ""}) in tags
    assert ("link", {"rel": "stylesheet", "href": "/static/dashboard.css"}) in tags
    labels = [a for t, a in tags if t == "label"]
    assert {"for": "token"} in labels  # the token field has a label
    assert any(t == "input" and a.get("id") == "token" and a["type"] == "password" for t, a in tags)


def test_static_files_are_served_with_their_types(client: TestClient) -> None:
    for name, kind in ASSETS.items():
        got = client.get(f"/static/{name}")
        assert got.status_code == 200, name
        assert kind in got.headers["content-type"], (name, got.headers["content-type"])
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.content == (STATIC_DIR / name).read_bytes()
    missing = client.get("/static/nope.js")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}


def test_the_api_is_not_shadowed_and_the_pages_are_not_in_the_schema(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert all(p.startswith("/api/") or p == "/metrics" for p in paths), paths
    assert client.get("/docs").status_code == 200
    unknown = client.get("/api/nope")
    assert unknown.status_code == 404 and set(unknown.json()) == {"error"}
    jobs = client.get("/api/jobs")  # the API, answering that the database is not there
    assert jobs.status_code == 503 and set(jobs.json()) == {"error"}
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert client.get("/nope").status_code == 404


def test_nothing_is_fetched_from_outside_and_no_markup_is_built_from_data() -> None:
    files = sorted(STATIC_DIR.iterdir())
    assert {f.name for f in files} == {"index.html", *ASSETS}  # flat: package data api/static/*
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert not re.search(
            r"(?i)(https?:|ftp:)?//[a-z0-9.-]+\.[a-z]{2,}", text.replace(SVG_NAMESPACE, "")
        ), f.name
        assert "url(" not in text and "@import" not in text, f.name
    for tag, attrs in Tags((STATIC_DIR / "index.html").read_text(encoding="utf-8")).tags:
        for name in ("src", "href", "action"):
            if name in attrs:
                assert attrs[name].startswith("/") and not attrs[name].startswith("//"), (
                    tag,
                    attrs,
                )
    script = (STATIC_DIR / "dashboard.js").read_text(encoding="utf-8")
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "DOMParser",
        "createContextualFragment",
        "srcdoc",
    ):
        assert sink not in script, sink
    # every fetch goes through api(), to a path of this server
    assert re.findall(r"\bfetch\(([^)]*)\)", script) == ["path, init"]
    assert all(p.startswith("/api/") for p in re.findall(r'api\("([^"]*)"', script))


def test_package_data_ships_the_dashboard() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "api/static/*" in config["tool"]["setuptools"]["package-data"]["isthmus"]
    assert not [p for p in STATIC_DIR.iterdir() if p.is_dir()]


# -- in a browser, on a real migration ---------------------------------------------------------

FIRST = ["offices", "profiles", "doctors", "patients", "orders"]  # products: watched later
TOKEN = "dashboard-e2e-token"
HOSTILE = '<img src=x onerror="window.__pwned = 1"> & "quotes"'
SLOW_FUNCTION = """
CREATE OR REPLACE FUNCTION public.isthmus_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep({seconds});
    RETURN NEW;
END $$
"""


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _command(setup: Setup, *args: str) -> list[str]:
    return [isthmus_executable(), "--config", str(setup.config_path), *args]


@contextmanager
def serving(setup: Setup, directory: Path) -> Iterator[str]:
    """``isthmus serve`` with a bearer token on a free loopback port, until the block ends."""
    port = _free_port()
    env = {**cli_env(), TOKEN_VARIABLE: TOKEN}
    log_path = directory / "serve.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            _command(setup, "serve", "--host", "127.0.0.1", "--port", str(port)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log_path.read_text(encoding="utf-8")
                try:
                    with urllib.request.urlopen(base + "/api/health", timeout=2):
                        break
                except urllib.error.HTTPError:
                    break  # it answers (503 would say why; the test's checks will show)
                except OSError:
                    assert time.monotonic() < deadline, log_path.read_text(encoding="utf-8")
                    time.sleep(0.1)
            yield base
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Watch:
    """What the page did: requests, refused requests, console errors, dialogs."""

    def __init__(self, base: str) -> None:
        self.origin = urlsplit(base).netloc
        self.requests: list[str] = []
        self.refused: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def attach(self, page: Any) -> None:
        from playwright.sync_api import ConsoleMessage, Dialog, Route

        def route(r: Route) -> None:
            parts = urlsplit(r.request.url)
            if parts.scheme == "http" and parts.netloc == self.origin:
                r.continue_()
            else:
                self.refused.append(r.request.url)
                r.abort()

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                self.errors.append(msg.text)

        def on_dialog(dialog: Dialog) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.route("**/*", route)
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("dialog", on_dialog)


def _target_value(setup: Setup, column: str, legacy_id: int) -> Any:
    with setup.target_conn() as conn:
        row = conn.execute(
            f"SELECT {column} FROM public.patients WHERE id = %s",  # noqa: S608
            (uuid_of(setup, "patients", legacy_id),),
        ).fetchone()
    assert row is not None
    return row[0]


def _plant_review(setup: Setup) -> tuple[int, int]:
    """Two patients changed on both sides and one changed in the source only; the job
    ``nightly`` (bidirectional, manual) runs once and parks the two for review."""
    first, second, third = source_ids(setup.source, "patients")[:3]
    run_sql(
        setup.source,
        [
            ("UPDATE patients SET notes = %s WHERE id = %s", ("the source's note", first)),
            ("UPDATE patients SET phone = %s WHERE id = %s", ("source phone", second)),
            ("UPDATE patients SET first_name = %s WHERE id = %s", ("Renamed", third)),
        ],
    )
    with setup.target_conn() as conn:
        for column, text, key in (("notes", HOSTILE, first), ("phone", "target phone", second)):
            conn.execute(
                f"UPDATE public.patients SET {column} = %s WHERE id = %s",  # noqa: S608
                (text, uuid_of(setup, "patients", key)),
            )
    commands.jobs_create(
        setup.config,
        "nightly",
        "manual_sync",
        entities=FIRST,
        direction="bidirectional",
        conflict="manual",
    )
    run = commands.jobs_run(setup.config, "nightly")
    assert run.status == "completed", run.to_dict()
    assert sum(e.to_dict()["parked_for_review"] for e in run.entities) == 2, run.to_dict()
    assert run.records_synced == 1, run.to_dict()
    return first, second


def _resolve_in_browser(page: Any, base: str, setup: Setup, first: int, second: int) -> None:
    """Both versions side by side; Target on the first (refused until the token is set),
    Source on the second; both databases change and the items leave the page."""
    from playwright.sync_api import expect

    page.goto(base + "/review")
    items = page.locator("article.review-item")
    expect(items).to_have_count(2)
    expect(page.locator("#review-count")).to_have_text("2 records wait for a decision.")
    one = page.locator(f'article.review-item[data-legacy-id="{first}"]')
    two = page.locator(f'article.review-item[data-legacy-id="{second}"]')
    expect(one.get_by_role("heading")).to_have_text(f"patients #{first}")
    notes = one.locator('tr[data-column="notes"]')
    expect(notes).to_have_class(re.compile(r"\bdiffers\b"))
    expect(notes.locator("td")).to_have_text(["the source's note", HOSTILE])  # text, not markup
    phone = two.locator('tr[data-column="phone"]')
    expect(phone).to_have_class(re.compile(r"\bdiffers\b"))
    expect(phone.locator("td")).to_have_text(["source phone", "target phone"])
    expect(two.locator('tr[data-column="email"]')).not_to_have_class(re.compile("differs"))
    assert page.locator("img").count() == 0

    # no token yet: the server refuses, the page says so next to the item, nothing changes
    one.get_by_role("button", name="Target", exact=True).click()
    expect(one.get_by_role("alert")).to_contain_text("enter the API token")
    expect(one.get_by_role("button", name="Target", exact=True)).to_be_enabled()
    assert value(setup.source, "patients", "notes", first) == "the source's note"

    page.get_by_label("API token").fill(TOKEN)
    one.get_by_role("button", name="Target", exact=True).click()
    expect(one).to_have_count(0)
    expect(page.locator("#review-done")).to_contain_text("kept the target's version")
    two.get_by_role("button", name="Source", exact=True).click()
    expect(two).to_have_count(0)
    expect(items).to_have_count(0)
    expect(page.get_by_text("Nothing waits for review.")).to_be_visible()

    # the source took the target's version of the first, the target the source's of the second
    assert value(setup.source, "patients", "notes", first) == HOSTILE
    assert _target_value(setup, "notes", first) == HOSTILE
    assert _target_value(setup, "phone", second) == "source phone"
    assert value(setup.source, "patients", "phone", second) == "source phone"
    page.reload()  # the token stays in this browser; the queue stays empty
    expect(page.get_by_label("API token")).to_have_value(TOKEN)
    expect(page.get_by_text("Nothing waits for review.")).to_be_visible()
    assert page.evaluate("window.__pwned") is None


def _watch_migration(
    page: Any, base: str, setup: Setup, directory: Path, shots: list[Path]
) -> None:
    """The products migration, slowed by a trigger, seen moving on the overview."""
    from playwright.sync_api import expect

    with setup.target_conn() as conn:
        conn.execute(SLOW_FUNCTION.format(seconds=0.008))
        conn.execute(
            "CREATE TRIGGER isthmus_test_slow BEFORE INSERT ON public.products"
            " FOR EACH ROW EXECUTE FUNCTION public.isthmus_test_slow()"
        )
    log_path = directory / "migrate.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            _command(setup, "migrate", "--entity", "products", "--batch-size", "100"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=cli_env(),
        )
        try:
            page.goto(base + "/")
            expect(page.locator("#jobs tr[data-job='nightly']")).to_be_visible()
            bar = page.get_by_role("progressbar", name="products progress", exact=True)
            expect(bar).to_be_visible(timeout=30_000)
            seen = bar.get_attribute("value")
            assert seen is not None and int(seen) < setup.counts["products"], seen
            expect(bar).to_have_attribute("max", str(setup.counts["products"]))
            expect(bar).not_to_have_attribute("value", seen, timeout=30_000)  # it moves
            moved = bar.get_attribute("value")
            assert moved is not None and int(moved) > int(seen), (seen, moved)
            card = page.locator("#running article[data-entity='products']")
            expect(card.locator(".rate")).to_have_text(re.compile(r"^[\d,.]+ rows/s$"))
            expect(page.locator("#running")).to_have_attribute("aria-live", "polite")
            page.wait_for_function(  # a third of the way: a screenshot worth showing
                "() => { const b = document.querySelector("
                "'#running article[data-entity=products] progress');"
                " return b !== null && b.value >= b.max / 3; }"
            )
            for shot in shots:
                page.screenshot(path=str(shot))
            with setup.target_conn() as conn:  # no need to wait for the rest
                conn.execute(SLOW_FUNCTION.format(seconds=0))
            assert proc.wait(timeout=120) == 0, log_path.read_text(encoding="utf-8")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with setup.target_conn() as conn:
                conn.execute("DROP TRIGGER IF EXISTS isthmus_test_slow ON public.products")
                conn.execute("DROP FUNCTION IF EXISTS public.isthmus_test_slow()")
    row = page.locator("#entities tr[data-entity='products']")
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.get_by_role("progressbar")).to_have_attribute("value", str(setup.counts["products"]))
    expect(page.get_by_text("Nothing is running.")).to_be_visible()
    expect(page.locator("#entities tbody tr")).to_have_count(6)


def _job_and_reports(page: Any, base: str, setup: Setup) -> None:
    """The job page (chart, checkpoints, no errors), then a failing validation drilled into."""
    from playwright.sync_api import expect

    page.goto(base + "/jobs/nightly")
    expect(page.locator("#throughput-chart .point").first).to_be_visible()
    expect(page.locator("#checkpoints tbody tr").first).to_be_visible()
    expect(page.locator("#last-run tbody tr")).to_have_count(len(FIRST))
    expect(page.get_by_text("No errors.")).to_be_visible()

    # a name that is markup and holds a "/": shown as text, its page reached by the job's ID
    odd = '<i>team/a</i> & "b"'
    made = commands.jobs_create(setup.config, odd, "manual_sync", entities=["offices"])
    page.goto(base + "/")
    page.get_by_role("link", name=odd, exact=True).click()
    assert page.url == f"{base}/jobs/{made.id}"
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Job {odd}")
    expect(page.get_by_text("It has not run yet.")).to_be_visible()
    expect(page.locator("#checkpoints")).to_be_hidden()
    assert page.locator("main i").count() == 0

    changed = source_ids(setup.source, "patients")[5]
    with setup.target_conn() as conn:
        conn.execute(
            "UPDATE public.patients SET last_name = %s WHERE id = %s",
            ("Changed in the target", uuid_of(setup, "patients", changed)),
        )
    done = commands.validate(setup.config, ["data_integrity"], ["patients", "orders"])
    assert done.exit_code == 1
    page.goto(base + "/reports")
    run = page.locator("section.run").first
    expect(run.locator("tr[data-entity='orders'] td[data-type='data_integrity']")).to_have_text(
        "pass"
    )
    failing = run.locator("tr[data-entity='patients'] td[data-type='data_integrity']")
    expect(failing).to_have_text("fail · 1")
    href = run.get_by_role("link", name="Full HTML report").get_attribute("href")
    assert href is not None and re.fullmatch(r"/api/reports/[0-9a-f-]{36}/html", href), href
    failing.get_by_role("link").click()
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", "FAIL")
    detail = page.locator("article.report[data-entity='patients']")
    expect(detail).to_contain_text("value mismatch (1)")
    cells = detail.locator("tbody tr").first.locator("td, th")
    expect(cells).to_have_text(
        [
            str(changed),
            "last_name",
            str(value(setup.source, "patients", "last_name", changed)),
            "Changed in the target",
            "target",
        ]
    )


def test_dashboard_end_to_end_in_headless_chromium(
    pg_databases: PgDatabases, tmp_path: Path
) -> None:
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium executable (make browser installs Debian's chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)
    started = time.monotonic()
    source = parse_url(f"sqlite:///{tmp_path / 'legacy.db'}")
    setup = make_setup(source, pg_databases.create("isthmus_dash"), tmp_path, scale=4)
    config: Config = setup.config
    assert commands.migrate(config, FIRST).exit_code == 0
    first, second = _plant_review(setup)

    with serving(setup, tmp_path) as base, sync_playwright() as pw:
        watch = Watch(base)
        browser = pw.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(20_000)
            watch.attach(page)

            _resolve_in_browser(page, base, setup, first, second)
            # the refused click, and only it, made the browser log a failed request
            assert len(watch.errors) == 1 and "401" in watch.errors[0], watch.errors
            watch.errors.clear()

            shots = [tmp_path / "dashboard.png"]
            if os.environ.get("ISTHMUS_UPDATE_SCREENSHOT"):  # refresh README's picture
                shots.append(SCREENSHOT)
            _watch_migration(page, base, setup, tmp_path, shots)
            _job_and_reports(page, base, setup)
        finally:
            browser.close()

    assert watch.errors == []
    assert watch.dialogs == []
    assert watch.refused == []
    assert watch.requests and all(urlsplit(u).netloc == watch.origin for u in watch.requests)
    for shot in shots:
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, shot
        assert data[16:24] == (1280).to_bytes(4, "big") + (800).to_bytes(4, "big")  # IHDR
    assert time.monotonic() - started < 90
