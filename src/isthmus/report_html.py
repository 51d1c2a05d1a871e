"""Validation reports as one self-contained HTML file, to read in a browser or mail on.

Everything is inline (CSS, an SVG chart), nothing is fetched: no script, font, image or
stylesheet by URL, and a Content-Security-Policy that forbids them all, so a name in the
data that looks like markup can neither run nor load anything. Every value taken from the
reports is HTML-escaped. The same reports and ``now`` give the same bytes.

Sections: ``#summary`` (verdict, counts, staleness), ``#results`` (one row per report:
entity × validation type), ``#discrepancies`` (counts by kind and the first samples of each
failing report; notes, which do not fail a check, apart) and ``#throughput-chart`` (one bar
per entity: the migration/sync rate a performance check measured, else the validation rate).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape

from isthmus.state.enums import ValidationType
from isthmus.state.models import MigrationValidationReport

SHOWN_SAMPLES = 10  # per kind; the report keeps up to 20
MAX_VALUE_CHARS = 200
TYPE_ORDER = [
    ValidationType.COMPLETENESS_CHECK,
    ValidationType.DATA_INTEGRITY,
    ValidationType.RELATIONSHIP_INTEGRITY,
    ValidationType.PERFORMANCE_CHECK,
]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
margin:0 auto;max-width:1100px;padding:24px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 10px}
h3{font-size:15px;margin:18px 0 6px}h4{font-size:14px;margin:12px 0 4px}
table{border-collapse:collapse;margin:6px 0}
th,td{border:1px solid #d5d9e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;font-size:20px;font-weight:700;padding:4px 14px;border-radius:4px}
.verdict.pass,tr.pass td.status{color:#17603a}.verdict.pass{background:#dcf3e5}
.verdict.fail,tr.fail td.status{color:#a11d1d}.verdict.fail{background:#fbe1e1}
.verdict.empty{background:#eee}
.stale-banner{background:#fff3cd;border:1px solid #e0c56e;padding:6px 10px;margin:8px 0}
.badge-stale{background:#fff3cd;color:#7a5b00;border-radius:3px;padding:0 4px;margin-left:4px}
tr.stale td{background:#fffbea}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:10px 0}
dl.facts dt{color:#5b6472}dl.facts dd{margin:0}
code,.value{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:12.5px;
word-break:break-all}
article{border:1px solid #d5d9e0;border-radius:4px;padding:4px 14px 10px;margin:12px 0}
article.fail{border-left:4px solid #a11d1d}
.notes{background:#f6f8fa;border-left:4px solid #8a94a3;padding:2px 12px 8px;margin-top:10px}
.muted{color:#5b6472}ol.samples{margin:4px 0;padding-left:24px}ol.samples li{margin:3px 0}
svg text{font:12px system-ui,sans-serif;fill:#1d2430}svg .bar{fill:#3a6ea5}
svg .bar.validation{fill:#7f9cc0}
@media print{body{padding:0}article{break-inside:avoid}}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'"


def render_html(
    reports: Sequence[MigrationValidationReport],
    *,
    title: str = "isthmus validation report",
    now: datetime | None = None,
) -> str:
    """One HTML5 document describing ``reports``; ``now`` decides staleness (default: now)."""
    now = _aware(now or datetime.now(UTC))
    rows = sorted(reports, key=_order)
    body = [
        f"<h1>{_e(title)}</h1>",
        _summary(rows, now),
        _results(rows, now),
        _discrepancies(rows),
        _chart(rows),
        _performance(rows),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )


# --- pieces of data --------------------------------------------------------------------


def entity_of(report: MigrationValidationReport) -> str:
    name = report.metadata.get("entity")
    return name if isinstance(name, str) and name else report.source_entity


def is_stale(report: MigrationValidationReport, now: datetime) -> bool:
    return report.expires_at <= _aware(now)


def throughput_by_entity(
    reports: Iterable[MigrationValidationReport],
) -> dict[str, tuple[float | None, str]]:
    """entity -> (rows per second, what was measured) for the chart.

    A performance check's ``metadata.throughput.rows_per_second`` (the latest, when several)
    is the migration/sync rate; without one, the validation rate: the entity's records
    validated over its checks' time, both summed across its reports.
    """
    measured: dict[str, tuple[datetime, float, str]] = {}
    records: dict[str, int] = {}
    millis: dict[str, int] = {}
    for r in reports:
        entity = entity_of(r)
        records[entity] = records.get(entity, 0) + r.records_validated
        millis[entity] = millis.get(entity, 0) + r.execution_time_ms
        tp = r.metadata.get("throughput")
        if r.validation_type == ValidationType.PERFORMANCE_CHECK and isinstance(tp, dict):
            rate = tp.get("rows_per_second")
            if isinstance(rate, int | float) and not isinstance(rate, bool):
                op = tp.get("operation")
                what = f"{op} rows/s" if isinstance(op, str) and op else "migration rows/s"
                if entity not in measured or r.generated_at >= measured[entity][0]:
                    measured[entity] = (r.generated_at, float(rate), what)
    out: dict[str, tuple[float | None, str]] = {}
    for entity in sorted(records):
        if entity in measured:
            out[entity] = (measured[entity][1], measured[entity][2])
        else:
            seconds = millis[entity] / 1000
            out[entity] = (records[entity] / seconds if seconds else None, "validated rows/s")
    return out


# --- sections ----------------------------------------------------------------------------


def _summary(rows: list[MigrationValidationReport], now: datetime) -> str:
    failed = sum(not r.validation_passed for r in rows)
    stale = sum(is_stale(r, now) for r in rows)
    verdict = "FAIL" if failed else ("PASS" if rows else "NO REPORTS")
    css = "fail" if failed else ("pass" if rows else "empty")
    runs = sorted({str(r.metadata["run_id"]) for r in rows if r.metadata.get("run_id")})
    facts = [
        ("Reports", f"{_n(len(rows))} ({_n(len(rows) - failed)} passed, {_n(failed)} failed)"),
        ("Entities", _n(len({entity_of(r) for r in rows}))),
        ("Records validated", _n(sum(r.records_validated for r in rows))),
        ("Discrepancies", _n(sum(r.discrepancies_found for r in rows))),
        ("Generated", _when(now)),
    ]
    if rows:
        first, last = min(r.generated_at for r in rows), max(r.generated_at for r in rows)
        span = _when(first) if first == last else f"{_when(first)} – {_when(last)}"
        facts.append(("Validated at", span))
    if runs:
        facts.append(("Run" if len(runs) == 1 else "Runs", ", ".join(runs)))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    out = [
        f'<section id="summary" data-verdict="{_e(verdict)}" data-stale="{_e(stale)}">',
        f'<p class="verdict {css}">{_e(verdict)}</p>',
    ]
    if stale:
        out.append(
            f'<p class="stale-banner"><strong>stale</strong>: {_n(stale)} of {_n(len(rows))} '
            f"report{'s' if len(rows) != 1 else ''} expired on or before {_e(_when(now))}; "
            "run the validation again before relying on them.</p>"
        )
    out += [f'<dl class="facts">{dl}</dl>', "</section>"]
    return "\n".join(out)


def _results(rows: list[MigrationValidationReport], now: datetime) -> str:
    head = (
        "<tr><th>Entity</th><th>Validation</th><th>Result</th><th>Records</th>"
        "<th>Discrepancies</th><th>Time (ms)</th><th>Source → target</th><th>Remarks</th></tr>"
    )
    body = []
    for r in rows:
        result = "pass" if r.validation_passed else "fail"
        stale = is_stale(r, now)
        status = _e(result.upper())
        if stale:
            status += (
                f'<span class="badge-stale" title="expired {_e(_when(r.expires_at))}">stale</span>'
            )
        body.append(
            f'<tr class="{result}{" stale" if stale else ""}" data-entity="{_e(entity_of(r))}" '
            f'data-type="{_e(r.validation_type.value)}">'
            f"<td>{_e(entity_of(r))}</td><td>{_e(_label(r.validation_type))}</td>"
            f'<td class="status">{status}</td><td class="num">{_n(r.records_validated)}</td>'
            f'<td class="num">{_n(r.discrepancies_found)}</td>'
            f'<td class="num">{_n(r.execution_time_ms)}</td>'
            f"<td>{_e(r.source_entity)} → {_e(r.target_entity)}</td><td>{_remarks(r)}</td></tr>"
        )
    return (
        '<section><h2>Results</h2>\n<table id="results">\n<thead>'
        + head
        + "</thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table></section>"
    )


def _remarks(r: MigrationValidationReport) -> str:
    parts = []
    if skipped := r.metadata.get("skipped"):
        parts.append(f"skipped: {_e(skipped)}")
    sample = r.metadata.get("sample")
    if isinstance(sample, dict):
        if statement := sample.get("statement"):
            parts.append(_e(statement))
        elif isinstance(sample.get("rows"), int):
            parts.append(f"sampled {_n(sample['rows'])} of {_n(sample.get('population'))} rows")
    notes = r.metadata.get("notes")
    counts = notes.get("counts") if isinstance(notes, dict) else None
    if isinstance(counts, dict):
        total = sum(_int(v) for v in counts.values())
        parts.append(f"{_n(total)} note{'s' if total != 1 else ''} (not failing)")
    return "<br>".join(parts)


def _discrepancies(rows: list[MigrationValidationReport]) -> str:
    blocks = []
    for r in rows:
        notes = r.metadata.get("notes")
        if r.validation_passed and not notes:
            continue
        result = "pass" if r.validation_passed else "fail"
        out = [
            f'<article class="{result}" data-entity="{_e(entity_of(r))}" '
            f'data-type="{_e(r.validation_type.value)}">',
            f"<h3>{_e(entity_of(r))} · {_e(_label(r.validation_type))} · {result.upper()}</h3>",
        ]
        if not r.validation_passed:
            n = r.discrepancies_found
            out.append(f"<p>{_n(n)} discrepanc{'y' if n == 1 else 'ies'}.</p>")
            out.append(_findings(r.discrepancy_details))
        if notes:
            out.append(
                '<div class="notes"><h4>Notes — reported, not failing the check</h4>'
                + _findings(notes)
                + "</div>"
            )
        out.append("</article>")
        blocks.append("\n".join(out))
    if not blocks:
        return '<section id="discrepancies"><h2>Discrepancies</h2><p>None.</p></section>'
    return '<section id="discrepancies"><h2>Discrepancies</h2>\n' + "\n".join(blocks) + "</section>"


def _findings(details: object) -> str:
    if isinstance(details, list):
        details = {"samples": {"details": details}}
    if not isinstance(details, dict):
        return '<p class="muted">No details were recorded.</p>'
    counts, samples = _dict(details.get("counts")), _dict(details.get("samples"))
    kinds = sorted(set(counts) | set(samples), key=lambda k: (-_int(counts.get(k)), k))
    out = []
    if counts:
        rows = "".join(
            f'<tr><td>{_e(k)}</td><td class="num">{_n(counts.get(k))}</td></tr>' for k in kinds
        )
        out.append(f"<table><thead><tr><th>Kind</th><th>Found</th></tr></thead>{rows}</table>")
    if details.get("truncated"):
        out.append('<p class="muted">Samples truncated: only the first of each kind were kept.</p>')
    for kind in kinds:
        kept = samples.get(kind)
        if not isinstance(kept, list) or not kept:
            continue
        shown = kept[:SHOWN_SAMPLES]
        total = _int(counts.get(kind)) or len(kept)
        if any(isinstance(s, dict | list) for s in shown):
            items = '<ol class="samples">' + "".join(f"<li>{_sample(s)}</li>" for s in shown)
            items += "</ol>"
        else:  # plain ids: one line
            items = f'<p class="value">{_e(", ".join(_json(s) for s in shown))}</p>'
        out.append(
            f'<h4>{_e(kind)} <span class="muted">(showing {_n(len(shown))} of {_n(total)})</span>'
            f"</h4>{items}"
        )
    for key in sorted(k for k in details if k not in ("counts", "samples", "truncated")):
        out.append(f"<h4>{_e(key.replace('_', ' '))}</h4>{_mapping(details[key])}")
    return "\n".join(out)


def _sample(sample: object) -> str:
    if not isinstance(sample, dict):
        return f'<span class="value">{_e(_json(sample))}</span>'
    columns = sample.get("columns")
    ident = ", ".join(
        f'{_e(k)} <span class="value">{_e(_json(v))}</span>'
        for k, v in sample.items()
        if not (k == "columns" and isinstance(columns, dict))
    )
    if not isinstance(columns, dict):
        return ident
    rows = []
    for col, diff in columns.items():
        if isinstance(diff, dict) and ("source" in diff or "target" in diff):
            src, tgt = _json(diff.get("source")), _json(diff.get("target"))
        else:
            src, tgt = _json(diff), ""
        rows.append(
            f'<tr><td>{_e(col)}</td><td class="value">{_e(src)}</td>'
            f'<td class="value">{_e(tgt)}</td></tr>'
        )
    return (
        f"{ident}<table><thead><tr><th>Column</th><th>Source</th><th>Target</th></tr></thead>"
        + "".join(rows)
        + "</table>"
    )


def _mapping(value: object) -> str:
    if isinstance(value, dict) and value:
        rows = "".join(
            f'<tr><td>{_e(k)}</td><td class="num">{_n(v)}</td></tr>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f'<tr><td>{_e(k)}</td><td class="value">{_e(_json(v))}</td></tr>'
            for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    return f'<p class="value">{_e(_json(value))}</p>'


def _chart(rows: list[MigrationValidationReport]) -> str:
    data = throughput_by_entity(rows)
    if not data:
        return ""
    top = max((v for v, _ in data.values() if v), default=0.0)
    label_w, bar_w, bar_h, gap, pad = 210, 400, 20, 10, 8
    width, height = label_w + bar_w + 190, pad * 2 + len(data) * (bar_h + gap) - gap
    parts = []
    for i, (entity, (value, what)) in enumerate(data.items()):
        y = pad + i * (bar_h + gap)
        w = max(1.0, bar_w * value / top) if value and top else 0.0
        shown = entity if len(entity) <= 28 else entity[:27] + "…"
        text = f"{_rate(value)} {what}"
        kind = "measured" if what != "validated rows/s" else "validation"
        parts.append(
            f"<g><title>{_e(entity)}: {_e(text)}</title>"
            f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{_e(shown)}</text>'
            f'<rect class="bar {kind}" data-entity="{_e(entity)}" data-value="{_e(_rate(value))}" '
            f'x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}"></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{_e(text)}</text></g>'
        )
    return (
        "<section><h2>Throughput per entity</h2>\n"
        '<p class="muted">Rows per second: the migration/sync rate a performance check measured '
        "(dark bars), else the validation rate, records validated over the checks' time "
        "(light bars).</p>\n"
        f'<svg id="throughput-chart" role="img" aria-label="Throughput per entity" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">\n'
        + "\n".join(parts)
        + "\n</svg></section>"
    )


def _performance(rows: list[MigrationValidationReport]) -> str:
    out = []
    for r in rows:
        if r.validation_type != ValidationType.PERFORMANCE_CHECK:
            continue
        m, cells = r.metadata, []
        tp, lk, qs = m.get("throughput"), m.get("lookups"), m.get("queries")
        if isinstance(tp, dict):
            cells.append(
                f"{_rate(tp.get('rows_per_second'))} rows/s ({_e(tp.get('operation') or '?')}: "
                f"{_n(tp.get('rows'))} rows in {_n(tp.get('seconds'))} s, "
                f"{_n(tp.get('checkpoints'))} checkpoints)"
            )
        if isinstance(lk, dict):
            n = lk.get("samples")
            cells.append(
                f"mapping lookups p50 {_n(lk.get('p50_ms'))} ms, p95 {_n(lk.get('p95_ms'))} ms"
                + (f" ({_n(n)} samples)" if n is not None else "")
            )
        for q in qs if isinstance(qs, list) else []:
            if isinstance(q, dict):
                cells.append(
                    f"{_e(q.get('name'))}: p50 {_n(q.get('p50_ms'))} ms, "
                    f"p95 {_n(q.get('p95_ms'))} ms <code>{_e(q.get('sql'))}</code>"
                )
        if cells:
            out.append(f"<tr><td>{_e(entity_of(r))}</td><td>{'<br>'.join(cells)}</td></tr>")
    if not out:
        return ""
    return (
        "<section><h2>Performance</h2><table><thead><tr><th>Entity</th><th>Measured</th></tr>"
        "</thead>" + "".join(out) + "</table></section>"
    )


# --- formatting ---------------------------------------------------------------------------


def _e(value: object) -> str:
    return escape(value if isinstance(value, str) else str(value), quote=True)


def _n(value: object) -> str:
    """A number with thousands separators (floats to 1 decimal); anything else escaped."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else _e(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return _e(value)


def _rate(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    return "n/a"


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: object) -> dict[str, object]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _label(kind: ValidationType) -> str:
    return kind.value.replace("_", " ")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(moment: datetime) -> str:
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _order(r: MigrationValidationReport) -> tuple[str, int, datetime, str]:
    kind = TYPE_ORDER.index(r.validation_type) if r.validation_type in TYPE_ORDER else 99
    return (entity_of(r), kind, r.generated_at, str(r.id))


__all__ = ["entity_of", "is_stale", "render_html", "throughput_by_entity"]
