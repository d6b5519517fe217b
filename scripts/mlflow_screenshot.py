"""Screenshot of the MLflow UI's run list, each variant's seeds under its parent run.

    python scripts/mlflow_screenshot.py SMOKE_DIR OUT.png [--variant gan] [--experiment NAME]

Starts ``mlflow ui`` on SMOKE_DIR/mlflow.db (a copy: the store is not touched), opens the
experiment's "Training runs" list in headless Chromium and expands the parent run of
``--variant`` (default gan; the list is filtered to it) so that its seed runs show beneath it;
``--variant ""`` shows every variant's parent row, collapsed. Chromium cannot click from its command line, so the page is loaded in an
iframe of a small page served from the same origin as the UI (a proxy in this process),
whose script clicks the row's expander and closes the assistant panel.
"""

from __future__ import annotations

import argparse
import http.server
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PAGE = """<!doctype html><html><body style="margin:0">
<iframe id="ui" src="{src}" style="border:0;width:100vw;height:100vh"></iframe>
<script>
const expand = {expand};
const done = new Set();
function tick() {{
  const d = document.getElementById("ui").contentDocument;
  if (!d) return;
  if (expand) for (const b of d.querySelectorAll('button[data-component-id$="runnamecellrenderer.tsx_46"]'))
    if (!done.has(b)) {{ done.add(b); b.click(); }}
  const close = d.querySelector('button[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (close) close.click();
}}
setInterval(tick, 500);
</script></body></html>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proxy(upstream: str, page: bytes) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            if self.path.startswith("/__shot.html"):
                body, status, headers = page, 200, [("Content-Type", "text/html")]
            else:
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n) if n else None
                req = urllib.request.Request(upstream + self.path, data=data, method=self.command)
                for k in ("Content-Type", "Accept"):
                    if self.headers.get(k):
                        req.add_header(k, self.headers[k])
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        body, status, headers = r.read(), r.status, list(r.headers.items())
                except urllib.error.HTTPError as err:
                    body, status, headers = err.read(), err.code, list(err.headers.items())
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = _forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _wait(url: str, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    sys.exit(f"mlflow_screenshot: {url} did not answer in {seconds:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--variant", default="gan")
    ap.add_argument("--experiment", default="mnist-gan-comparison")
    ap.add_argument("--size", default="1500,760")
    a = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("mlflow_screenshot: no chromium on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "mlflow.db"
        shutil.copy(a.project / "mlflow.db", db)
        with sqlite3.connect(db) as c:
            row = c.execute("select experiment_id from experiments where name = ?",
                            (a.experiment,)).fetchone()  # fmt: skip
        if row is None:
            sys.exit(f"mlflow_screenshot: no experiment {a.experiment!r} in {a.project}/mlflow.db")
        port = _free_port()
        ui = subprocess.Popen(
            ["mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}", "--port", str(port),
             "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            upstream = f"http://127.0.0.1:{port}"
            _wait(upstream + "/health", 120)
            src = f"/#/experiments/{row[0]}/runs"
            if a.variant:
                src += "?searchFilter=" + urllib.parse.quote(f"tags.variant = '{a.variant}'")
            page = PAGE.format(src=src, expand="true" if a.variant else "false")
            proxy = _proxy(upstream, page.encode())
            url = f"http://127.0.0.1:{proxy.server_address[1]}/__shot.html"
            a.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={a.size}", "--virtual-time-budget=30000",
                 f"--screenshot={a.out.resolve()}", url],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            proxy.shutdown()
        finally:
            ui.terminate()
            ui.wait(30)
    print(f"mlflow_screenshot: {a.out}")


if __name__ == "__main__":
    main()
