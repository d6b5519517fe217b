"""Open a built report (reports/index.html) in headless Chromium and check what a reader sees.

    python scripts/check_report.py [PROJECT_DIR]      (default: the current directory)

`make smoke` runs it on the smoke copy's report. Checked in the rendered page, not the HTML
text: every image decodes (the sample grids, GIFs, plots and model figures are data URIs),
every model of params.yaml has a row in the score table under a family heading, the
"Sampling s/1k" column has a value for every model, each model that wrote figures
(models/<V>/seed<S>/figures/figures.json, S the first of train.seeds: the run the page shows)
has them in the "Model figures" section, and the toy section is
there when `pipeline toy` ran. Prints one line per finding; exits 1 on any. Without a
`chromium` on PATH it says so and exits 0 (CI installs one).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt);
  const table = document.querySelector("table#score-table");
  const last = table ? Array.from(table.querySelectorAll("thead tr")).pop() : null;
  const heads = last ? Array.from(last.querySelectorAll("th")).map((h) => h.textContent.trim()) : [];
  const rows = {};
  const groups = [];
  if (table) {
    for (const tr of table.querySelectorAll("tbody tr")) {
      if (tr.dataset.row) {
        rows[tr.dataset.row] = Array.from(tr.querySelectorAll("td")).map((c) => c.textContent.trim());
      } else {
        groups.push(tr.textContent.trim());
      }
    }
  }
  const figures = {};
  for (const f of document.querySelectorAll("section#figures figure")) {
    figures[f.id] = Array.from(f.querySelectorAll("img")).length;
  }
  const out = {
    images: imgs.length, bad: bad, heads: heads, rows: rows, groups: groups,
    sections: Array.from(document.querySelectorAll("section[id]")).map((s) => s.id),
    figures: figures,
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def render(index: Path) -> dict:
    """The probe's findings for ``index`` as Chromium renders it."""
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "probe.html"
        page.write_text(
            index.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
            encoding="utf-8",
        )
        cmd = [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={Path(tmp) / 'profile'}", "--virtual-time-budget=20000",
            "--window-size=1400,3000", "--dump-dom", page.as_uri(),
        ]  # fmt: skip
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    if not found:
        raise SystemExit(f"check_report: Chromium rendered no probe: {dom.stderr[-500:]}")
    return json.loads(html.unescape(found.group(1)))


def findings(project: Path, seen: dict) -> list[str]:
    """What is wrong with the rendered report of ``project`` (empty: all is well)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    models = project / params["train"]["out_dir"]
    shown = f"seed{params['train'].get('seeds', [0])[0]}"  # the run the report's sections show
    out = []
    if not seen["images"] or seen["bad"]:
        out.append(
            f"{len(seen['bad'])} of {seen['images']} images do not decode: {seen['bad'][:5]}"
        )
    if not seen["groups"]:
        out.append("the score table has no family headings")
    sampling = next((i for i, h in enumerate(seen["heads"]) if h.startswith("Sampling")), None)
    if sampling is None:
        out.append(f"no Sampling column in the score table (columns: {seen['heads']})")
    for v in params["variants"]:
        cells = seen["rows"].get(f"variant:{v}")
        if cells is None:
            out.append(f"{v}: no row in the score table")
        elif sampling is not None and cells[sampling] in ("", "—", "not computed"):
            out.append(f"{v}: no sampling cost ({cells[sampling]!r})")
        if (models / v / shown / "figures" / "figures.json").is_file():
            if "figures" not in seen["sections"]:
                out.append(f"{v} wrote figures but the page has no Model figures section")
            elif not any(v in fid and n for fid, n in seen["figures"].items()):
                out.append(f"{v}: its figures are not in the Model figures section")
    toy = project / params.get("toy", {}).get("out_dir", "toy") / "summary.json"
    if toy.is_file() and "toy" not in seen["sections"]:
        out.append("pipeline toy ran but the page has no toy section")
    return out


def main() -> int:
    project = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    if shutil.which("chromium") is None:
        print("check_report: skipped (no chromium on PATH)")
        return 0
    params = yaml.safe_load((project / "params.yaml").read_text())
    index = project / params["report"]["out_dir"] / "index.html"
    seen = render(index)
    problems = findings(project, seen)
    for line in problems:
        print(f"check_report: {line}")
    if not problems:
        print(
            f"check_report: OK ({len(seen['rows'])} rows in {len(seen['groups'])} families, "
            f"{seen['images']} images decode, sections: {', '.join(seen['sections'])})"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
