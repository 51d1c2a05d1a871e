"""The self-contained HTML validation report: its content, its escaping, and how a browser shows it.

The unit tests build MigrationValidationReport rows directly (no database). The browser test
opens the file in Debian's Chromium through Playwright (never `playwright install`: there is
no browser download here), refuses every network request and watches for dialogs.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from isthmus.report_html import render_html, throughput_by_entity
from isthmus.state.enums import ValidationType
from isthmus.state.models import MigrationValidationReport

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert(1)</script> "x"'
UNICODE = "käufe_日本 ✓"
HOSTILE_VALUE = "</td><img src=x onerror=alert(2)>'&"
C, D, R, P = (
    ValidationType.COMPLETENESS_CHECK,
    ValidationType.DATA_INTEGRITY,
    ValidationType.RELATIONSHIP_INTEGRITY,
    ValidationType.PERFORMANCE_CHECK,
)


def make(
    entity: str,
    kind: ValidationType,
    *,
    records: int = 1000,
    ms: int = 500,
    discrepancies: int = 0,
    details: dict[str, Any] | list[Any] | None = None,
    metadata: dict[str, Any] | None = None,
    stale: bool = False,
) -> MigrationValidationReport:
    generated = NOW - timedelta(days=2 if stale else 0, hours=1)
    return MigrationValidationReport.model_validate(
        {
            "validation_type": kind,
            "source_entity": entity,
            "target_entity": f"public.{entity}",
            "records_validated": records,
            "validation_passed": discrepancies == 0,
            "discrepancies_found": discrepancies,
            "discrepancy_details": details,
            "execution_time_ms": ms,
            "generated_at": generated,
            "expires_at": generated + timedelta(days=1),
            "metadata": {"entity": entity, "run_id": "run-7", **(metadata or {})},
        }
    )


def reports() -> list[MigrationValidationReport]:
    """10 reports over 3 entities, all four types, 3 failing, 2 stale."""
    missing = list(range(1, 21))
    mismatches = [
        {"legacy_id": 5, "columns": {"name": {"source": "Ada", "target": "Ada L."}}},
        {"legacy_id": 9, "columns": {"total": {"source": 12.5, "target": None}}},
    ]
    return [
        make("customers", C, records=1_234_567, ms=2000),
        make(
            "customers",
            D,
            records=500,
            metadata={"sample": {"rows": 500, "population": 1_234_567, "confidence": 0.95}},
        ),
        make(
            "customers",
            R,
            metadata={
                "notes": {
                    "counts": {"orphan_in_source": 2},
                    "samples": {"orphan_in_source": [{"legacy_id": 77}, {"legacy_id": 78}]},
                    "truncated": False,
                }
            },
        ),
        make(
            "customers",
            P,
            metadata={
                "throughput": {
                    "rows_per_second": 5234.5,
                    "rows": 1_234_567,
                    "seconds": 235.8,
                    "checkpoints": 12,
                    "operation": "migrate",
                },
                "lookups": {"p50_ms": 0.4, "p95_ms": 1.9, "samples": 200},
                "queries": [
                    {"name": "by_legacy_id", "sql": "SELECT 1", "p50_ms": 0.3, "p95_ms": 1}
                ],
            },
        ),
        make(
            UNICODE,
            C,
            records=3000,
            ms=1500,
            discrepancies=45,
            details={
                "counts": {"missing_in_target": 45},
                "samples": {"missing_in_target": missing},
                "truncated": True,
            },
        ),
        make(
            UNICODE,
            D,
            records=1000,
            ms=500,
            discrepancies=2,
            details={
                "counts": {"value_mismatch": 2},
                "samples": {"value_mismatch": mismatches},
                "truncated": False,
                "columns_differing": {"name": 1, "total": 1},
            },
        ),
        make(UNICODE, R, records=1000, ms=1000),
        make(UNICODE, P, records=0, ms=10, metadata={"lookups": {"p50_ms": 1.5, "p95_ms": 4.0}}),
        make(HOSTILE, C, records=10, ms=100, stale=True),
        make(
            HOSTILE,
            D,
            records=10,
            ms=100,
            stale=True,
            discrepancies=1,
            details={
                "counts": {"value_mismatch": 1},
                "samples": {
                    "value_mismatch": [
                        {
                            "legacy_id": 1,
                            "columns": {HOSTILE: {"source": HOSTILE_VALUE, "target": "ok"}},
                        }
                    ]
                },
                "truncated": False,
            },
        ),
    ]


class Elements(HTMLParser):
    """Every start tag with its attributes (as a browser would decode them), and all text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.in_style = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self.in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self.in_style = False

    def handle_data(self, data: str) -> None:
        if not self.in_style:
            self.text.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if (tag is None or t == tag)
            and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


def test_sections_rows_and_bars_are_there_to_find() -> None:
    page = Elements(render_html(reports(), now=NOW))
    assert len(page.find(id="summary")) == 1
    assert len(page.find("table", id="results")) == 1
    assert len(page.find("svg", id="throughput-chart")) == 1
    rows = [a for t, a in page.tags if t == "tr" and "data-type" in a]
    assert len(rows) == 10
    assert {(a["data-entity"], a["data-type"]) for a in rows} == {
        (e, t.value) for e in ("customers", UNICODE) for t in (C, D, R, P)
    } | {(HOSTILE, C.value), (HOSTILE, D.value)}
    classes = sorted(a["class"] for a in rows)
    assert classes == ["fail", "fail", "fail stale", "pass", *["pass"] * 5, "pass stale"]
    bars = [a for t, a in page.tags if t == "rect" and "bar" in a.get("class", "").split()]
    assert sorted(a["data-entity"] for a in bars) == sorted(["customers", UNICODE, HOSTILE])
    assert all(float(a["width"]) > 0 and float(a["height"]) > 0 for a in bars)


def test_summary_fails_with_counts_separators_and_stale_marker() -> None:
    text = render_html(reports(), now=NOW)
    page = Elements(text)
    assert page.find(id="summary")[0]["data-verdict"] == "FAIL"
    assert page.find(id="summary")[0]["data-stale"] == "2"
    body = " ".join(" ".join(page.text).split())
    assert "10 (7 passed, 3 failed)" in body
    assert "Records validated 1,242,087" in body  # records validated, all reports
    assert "Discrepancies 48" in body
    assert "Generated 2026-11-02 12:00:00 UTC" in body
    assert "stale : 2 of 10 reports expired on or before 2026-11-02 12:00:00 UTC" in body
    assert "1,234,567" in body


def test_all_passing_and_fresh_is_pass_without_stale_marker() -> None:
    fresh = [r for r in reports() if r.validation_passed and r.expires_at > NOW]
    page = Elements(render_html(fresh, now=NOW))
    assert page.find(id="summary")[0]["data-verdict"] == "PASS"
    assert not page.find("p", **{"class": "stale-banner"})
    assert "stale" not in " ".join(page.text)


def test_hostile_names_and_values_are_escaped_never_markup() -> None:
    text = render_html(reports(), title=f"title {HOSTILE}", now=NOW)
    page = Elements(text)
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &quot;x&quot;" in text
    assert [t for t, _ in page.tags if t in ("script", "img", "iframe", "object", "embed")] == []
    assert HOSTILE in page.text  # as text, exactly, in the table cell
    assert any(HOSTILE_VALUE in t for t in page.text)  # the sample value, decoded as text
    assert any(a.get("data-entity") == HOSTILE for _, a in page.tags)
    assert UNICODE in page.text


def test_samples_show_counts_column_pairs_truncation_and_notes_apart() -> None:
    text = render_html(reports(), now=NOW)
    page = Elements(text)
    articles = page.find("article")
    failing = [a for a in articles if a["class"] == "fail"]
    assert {(a["data-entity"], a["data-type"]) for a in failing} == {
        (UNICODE, C.value),
        (UNICODE, D.value),
        (HOSTILE, D.value),
    }
    assert [(a["data-entity"], a["data-type"]) for a in articles if a["class"] == "pass"] == [
        ("customers", R.value)  # a passing report shows up only for its notes
    ]
    body = " ".join(" ".join(page.text).split())
    assert "missing_in_target (showing 10 of 45)" in body
    assert "Samples truncated" in body
    assert '<p class="value">1, 2, 3, 4, 5, 6, 7, 8, 9, 10</p>' in text  # plain ids on one line
    # column differences as source/target pairs, values as JSON so null and "" differ
    cells = [t.strip() for t in page.text if t.strip()]
    i = cells.index("name")
    assert cells[i : i + 3] == ["name", '"Ada"', '"Ada L."']
    j = cells.index("total")
    assert cells[j : j + 3] == ["total", "12.5", "null"]
    assert "columns differing" in body
    assert "Notes — reported, not failing the check" in body
    assert "orphan_in_source" in body
    assert "sampled 500 of 1,234,567 rows" in body
    assert "by_legacy_id" in body and "p95 1 ms" in body


def test_throughput_prefers_measured_rate_else_validation_rate() -> None:
    data = throughput_by_entity(reports())
    assert data["customers"] == (5234.5, "migrate rows/s")
    # no rate measured: (3000 + 1000 + 1000 + 0) records over (1.5 + 0.5 + 1 + 0.01) s
    assert data[UNICODE][0] == pytest.approx(5000 / 3.01)
    assert data[UNICODE][1] == "validated rows/s"
    assert data[HOSTILE][0] == pytest.approx(100.0)
    assert data[HOSTILE][1] == "validated rows/s"
    text = render_html(reports(), now=NOW)
    assert "5,234 migrate rows/s" in text or "5,235 migrate rows/s" in text
    assert "1,661 validated rows/s" in text


def test_no_external_resources() -> None:
    text = render_html(reports(), now=NOW)
    assert not re.search(r"https?://", text)
    assert "url(" not in text and "@import" not in text
    for tag, attrs in Elements(text).tags:
        assert not {"src", "href", "srcset", "action", "poster"} & set(attrs), (tag, attrs)
        assert tag not in ("link", "script", "img", "iframe")


def test_same_input_same_bytes_whatever_the_order() -> None:
    rs = reports()
    first = render_html(rs, now=NOW)
    assert render_html(rs, now=NOW) == first
    assert render_html(list(reversed(rs)), now=NOW) == first


def test_empty_and_list_shaped_details() -> None:
    empty = Elements(render_html([], now=NOW))
    assert empty.find(id="summary")[0]["data-verdict"] == "NO REPORTS"
    odd = make("x", C, discrepancies=2, details=[3, {"uuid": "u-1"}])
    text = render_html([odd], now=NOW)
    assert "details (showing 2 of 2)" in " ".join(" ".join(Elements(text).text).split())


# --- in a browser -------------------------------------------------------------------------


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium executable (make browser installs Debian's chromium)")
    from playwright.sync_api import ConsoleMessage, Dialog, Request, Route, sync_playwright

    path = tmp_path / "report.html"
    path.write_text(render_html(reports(), now=NOW), encoding="utf-8")
    url = path.as_uri()
    requests: list[str] = []
    refused: list[str] = []
    errors: list[str] = []
    dialogs: list[str] = []

    def route(r: Route) -> None:
        if r.request.url == url:
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def on_request(request: Request) -> None:
        requests.append(request.url)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(30_000)
            page.add_init_script(
                "window.__alerts = [];"
                "for (const f of ['alert', 'confirm', 'prompt'])"
                "  window[f] = (m) => { window.__alerts.push(String(m)); };"
            )
            page.route("**/*", route)
            page.on("request", on_request)
            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", on_dialog)
            page.goto(url, wait_until="load")

            assert "FAIL" in page.locator("#summary").inner_text()
            assert page.locator("#summary").get_attribute("data-verdict") == "FAIL"
            assert page.locator("#results tbody tr").count() == 10
            assert page.locator("#results tbody tr.fail").count() == 3
            assert page.locator("#results tbody tr.stale").count() == 2
            bars = page.locator("#throughput-chart .bar")
            assert bars.count() == 3
            names = set()
            for i in range(bars.count()):
                box = bars.nth(i).bounding_box()
                assert box is not None and box["width"] > 0 and box["height"] > 0, box
                names.add(bars.nth(i).get_attribute("data-entity"))
            assert names == {"customers", UNICODE, HOSTILE}
            assert page.locator("script, img, iframe").count() == 0
            hostile_cell = page.locator("#results td", has_text="alert(1)").first
            assert hostile_cell.inner_text() == HOSTILE
            assert page.evaluate("window.__alerts") == []

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert dialogs == []
    assert errors == []
    assert refused == []
    assert set(requests) == {url}
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
