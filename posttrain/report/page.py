"""Assemble sections into one self-contained HTML page (inline CSS, JS and images) and its markdown twin."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

from posttrain.report.sections import Section

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:14px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b7c2cf;font-size:12px}nav{margin-top:8px}nav a{color:#9cd0ff;margin-right:14px;font-size:13px}
main{padding:8px 28px 40px;max-width:1400px}section{background:#fff;border:1px solid #dde1e6;border-radius:6px;
padding:6px 18px 14px;margin:14px 0}h2{font-size:17px;border-bottom:1px solid #eee;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #dde1e6;padding:3px 8px;
vertical-align:top;text-align:left;white-space:pre-line}th{background:#f0f2f5;cursor:pointer}td.num{text-align:right;
font-variant-numeric:tabular-nums}img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}
.figures{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:12px;color:#555}
.graph .chain{margin:3px 0}.node{display:inline-block;background:#e8f1fb;border:1px solid #a9c8ea;border-radius:12px;
padding:1px 10px;font-weight:600}.arrow{color:#777}.chain.teacher{color:#7a4d00;font-size:12px}
.doc{border-top:1px dashed #ccc;padding-top:4px}.doc h4{margin:8px 0 2px}pre{margin:0;white-space:pre-wrap;
max-width:70ch;font-size:12px}.changed{background:#fff3c4;font-size:11px;padding:1px 6px;border-radius:8px}
.score-good{background:#e3f6e8}.score-bad{background:#fde8e8}.legend{font-size:12px;color:#555}
#js-errors:empty{display:none}#js-errors{background:#fde8e8;color:#900;padding:6px}
.lengths img.plot{max-width:480px}.filter{margin:6px 0}a{color:#0b63b6}
td.worse{background:#fde8e8;color:#900;font-weight:600}td.better{background:#e3f6e8;font-weight:600}
td.fail{background:#fde8e8;color:#900;font-weight:600}td.unknown{color:#777}ul.notes{font-size:12px;margin:4px 0}
table.scored td.num{white-space:pre}table.scored td:last-child{font:12px ui-monospace,monospace}
pre.loss-mask{max-width:110ch;color:#777;border:1px solid #eee;padding:6px}pre.loss-mask mark{background:#d7f0dc;
color:#111}
"""

JS = """
window.addEventListener('error', function (e) {
  document.getElementById('js-errors').textContent += 'error: ' + e.message + '\\n';
});
function sortTable(th) {
  var table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
  var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  var key = function (row) {
    var t = row.cells[col] ? row.cells[col].textContent.trim() : '';
    var n = parseFloat(t); return isNaN(n) ? t.toLowerCase() : n;
  };
  Array.prototype.slice.call(body.rows).sort(function (a, b) {
    var x = key(a), y = key(b);
    if (typeof x !== typeof y) { x = String(x); y = String(y); }
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
  }).forEach(function (row) { body.appendChild(row); });
}
function filterTask(select) {
  var task = select.value;
  document.querySelectorAll('table.board tbody tr').forEach(function (row) {
    row.style.display = !task || (row.dataset.tasks || '').split(' ').indexOf(task) >= 0 ? '' : 'none';
  });
  document.querySelectorAll('table.board [data-task]').forEach(function (cell) {
    cell.style.display = !task || cell.dataset.task === task ? '' : 'none';
  });
}
document.querySelectorAll('th').forEach(function (th) { th.addEventListener('click', function () { sortTable(th); }); });
window.addEventListener('load', function () {
  // What a reader sees, written where a test can read it: each plot's decoded size, the board's task filter.
  document.querySelectorAll('img.plot').forEach(function (img) {
    img.dataset.shown = img.complete && img.naturalWidth > 0 ? img.naturalWidth + 'x' + img.naturalHeight : 'broken';
  });
  var select = document.getElementById('task-filter'), m = location.hash.match(/task=([^&]+)/);
  if (select && m) { select.value = decodeURIComponent(m[1]); filterTask(select); }
  document.body.dataset.height = document.documentElement.scrollHeight;  // a screenshot's full-page height
  document.body.dataset.ready = 'yes';
});
"""


def render_html(title: str, subtitle: str, sections: Sequence[Section], extra_nav: str = "") -> str:
    """One HTML document: every image inlined as base64 PNG, no file or network fetched when opened."""
    images = {name: data for s in sections for name, data in s.images.items()}
    nav = "".join(f"<a href='#{s.id}'>{html.escape(s.title)}</a>" for s in sections) + extra_nav
    body = "".join(f"<section id='{s.id}'><h2>{html.escape(s.title)}</h2>{s.html}</section>" for s in sections)

    def inline(match: re.Match[str]) -> str:
        data = images.get(match.group(1))
        return f"src='data:image/png;base64,{base64.b64encode(data).decode()}'" if data else "src=''"

    body = re.sub(r"data-src='([^']+)'", inline, body)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>"
        f"<nav>{nav}</nav></header><div id='js-errors'></div><main>{body}</main><script>{JS}</script></body></html>"
    )


def render_markdown(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    return f"# {title}\n\n{subtitle}\n\n" + "\n".join(f"## {s.title}\n\n{s.md}" for s in sections)


def write_page(out_dir: Path, stem: str, title: str, subtitle: str, sections: Sequence[Section]) -> tuple[Path, Path]:
    """`<stem>.html`, `<stem>.md`, and the md's images under `report/`; returns the two page paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images_dir = out_dir / "report"
    for section in sections:
        for name, data in section.images.items():
            images_dir.mkdir(exist_ok=True)
            (images_dir / name).write_bytes(data)
    html_path, md_path = out_dir / f"{stem}.html", out_dir / f"{stem}.md"
    html_path.write_text(render_html(title, subtitle, sections), encoding="utf-8")
    md_path.write_text(render_markdown(title, subtitle, sections), encoding="utf-8")
    return html_path, md_path
