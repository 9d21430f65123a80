#!/usr/bin/env python3
"""Browser test of the built-in web explorer (issue 9), in headless Chromium via Selenium.

Starts real nodes and drives the page served at `/`:

  1. a dev node (`provchaind --dev`): every view loads without SEVERE console errors; a Turtle
     document with an error shows its line/column; a document submitted through the submit view
     turns final; its transaction view shows the proof verified by the node (and a tampered proof
     refused); a SPARQL query shows its rows; the chain and block views list the blocks;
  2. an authority of the 3-node testnet started alone with JWT_SECRET set: the page shows the
     not-ready banner with /ready's reason, and a write asks for a token (401) and then succeeds.

Screenshots of each view go to target/explorer-screenshots/ (or --screenshots DIR).

Usage: explorer_test.py [PATH_TO_PROVCHAIND]   (default: target/debug/provchaind)
Needs Debian's `chromium` and `chromium-driver` and `pip install selenium`; see run.sh, which
installs what is missing. The chromedriver path is set explicitly, so Selenium Manager never
downloads anything. Every wait has a deadline; nodes are stopped at the end even on failure.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never go online.

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DEADLINE = 30  # seconds, for any single wait


def log(msg):
    print(f"[explorer-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, data=None, headers=None, timeout=5):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def mint_jwt(secret, sub, ttl=3600):
    """HS256 token as `provchain token` mints it (header.payload.signature, base64url)."""

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps({"sub": sub, "exp": now + ttl, "iat": now}, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


class Node:
    """A provchaind process on loopback with its own data dir and free ports."""

    def __init__(self, binary, workdir, name, extra_args=(), env=None):
        self.data_dir = os.path.join(workdir, name)
        self.http_port = free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.log_path = os.path.join(workdir, name + ".log")
        args = [
            binary, *extra_args,
            "--data-dir", self.data_dir,
            "--http-port", str(self.http_port),
            "--metrics-port", str(free_port()),
            "--port", str(free_port()),
        ]
        full_env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"), **(env or {}))
        self.log_file = open(self.log_path, "w")
        log(f"starting {name}: {' '.join(args[1:])}")
        self.proc = subprocess.Popen(args, stdout=self.log_file, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
        deadline = time.time() + DEADLINE
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if http(self.base + "/health", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not healthy within {DEADLINE} s:\n{self.log_text()}")

    def json(self, path):
        code, body = http(self.base + path)
        return code, json.loads(body) if body else None

    def log_text(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log_file.close()


class AssetProxy:
    """For iterating on node/assets/explorer without rebuilding: serves `/` and `/explorer/*` from
    a directory and forwards everything else to the node (only with --assets)."""

    TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

    def __init__(self, assets, node):
        import http.server

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def handle_one(self):
                path = self.path.split("?")[0]
                if self.command == "GET" and (path == "/" or path.startswith("/explorer/")):
                    name = "index.html" if path == "/" else path[len("/explorer/"):]
                    fp = os.path.join(assets, os.path.basename(name))
                    if os.path.isfile(fp):
                        with open(fp, "rb") as f:
                            body = f.read()
                        self.send_response(200)
                        self.send_header("Content-Type", proxy.TYPES.get(os.path.splitext(fp)[1], "application/octet-stream"))
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n) if n else None
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                req = urllib.request.Request(node.base + self.path, data=data, headers=hdrs, method=self.command)
                try:
                    r = urllib.request.urlopen(req, timeout=10)
                except urllib.error.HTTPError as e:
                    r = e
                body = r.read()
                self.send_response(r.status if hasattr(r, "status") else r.code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


class Browser:
    def __init__(self, chromium, chromedriver, workdir, shots):
        opts = Options()
        opts.binary_location = chromium
        for a in (
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1366,1000", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update",
            f"--user-data-dir={os.path.join(workdir, 'chrome-profile')}",
        ):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            service = Service(executable_path=chromedriver, log_output=os.path.join(workdir, "chromedriver.log"))
        except TypeError:  # Selenium < 4.11 (e.g. Debian's python3-selenium)
            service = Service(executable_path=chromedriver)
        self.d = webdriver.Chrome(service=service, options=opts)
        self.d.set_page_load_timeout(DEADLINE)
        self.d.set_script_timeout(DEADLINE)
        self.shots = shots
        self.allowed = []  # substrings of SEVERE messages expected in the current step

    def wait(self, what, cond, timeout=DEADLINE):
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.2).until(lambda d: cond(d))
        except TimeoutException:
            self.shot("FAILED-" + what.replace(" ", "-")[:40])
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; console: {self.d.get_log('browser')}")

    def find(self, css):
        els = self.d.find_elements(By.CSS_SELECTOR, css)
        return els[0] if els else None

    def visit(self, base, route, view=None):
        """Opens base/#/route and waits until the view says it has rendered its data."""
        url = f"{base}/#/{route}"
        if self.d.current_url.startswith(base + "/"):
            self.d.execute_script("location.hash = arguments[0]", "#/" + route)
        else:
            self.d.get(url)
        view = view or route.split("/")[0].split("?")[0]
        self.wait(f"view {view} ready", lambda d: self.find(f'#view[data-ready="{view}"]'))

    def set_value(self, css, text):
        self.d.execute_script(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1];"
            "e.dispatchEvent(new Event('input', {bubbles: true}));",
            css, text,
        )

    def click(self, css):
        self.wait(f"{css} clickable", lambda d: self.find(css) and self.find(css).is_enabled())
        self.find(css).click()

    def text(self, css):
        e = self.find(css)
        return e.text if e else ""

    def shot(self, name):
        path = os.path.join(self.shots, name + ".png")
        self.d.save_screenshot(path)
        log(f"screenshot {path}")

    def check_console(self, step):
        """Fails on SEVERE console entries not expected in this step."""
        bad = []
        for entry in self.d.get_log("browser"):
            if entry.get("level") != "SEVERE":
                continue
            msg = entry.get("message", "")
            if any(a in msg for a in self.allowed):
                log(f"expected console error in {step}: {msg}")
                continue
            bad.append(msg)
        self.allowed = []
        if bad:
            raise AssertionError(f"console errors in {step}: {bad}")

    def quit(self):
        try:
            self.d.quit()
        except Exception as e:  # noqa: BLE001
            log(f"browser quit failed: {e}")


def dev_node_checks(b, node, base):
    marker = uuid.uuid4().hex[:12]
    ex = "http://example.org/explorer-test#"

    # Network view: this node, schedule, authorities, charts after a few samples.
    b.visit(base, "network")
    _, status = node.json("/api/status")
    assert status["node_id"] in b.text("#node-card"), b.text("#node-card")
    assert status["genesis_hash"] in b.d.find_element(By.CSS_SELECTOR, "#node-card").get_attribute("textContent")
    b.wait("leader table", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#leaders tbody tr")) == 6)
    assert "this node" in b.text("#leaders"), b.text("#leaders")
    b.wait("authorities table", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#authorities tbody tr")) == 1)
    b.wait("a sealed slot listed", lambda d: "slot " in b.text("#authorities"))
    b.check_console("network view")

    # Submit view: a syntax error is shown with its line and column.
    b.visit(base, "submit")
    b.allowed = ["/api/transactions - Failed to load resource: the server responded with a status of 400"]
    b.set_value("#submit-data", f'<{ex}a> <{ex}b> "ok" .\n<{ex}a> <{ex}b> "broken .\n')
    b.click("#submit-button")
    b.wait("validation error", lambda d: b.find("#submit-error"))
    err = b.find("#submit-error")
    assert err.get_attribute("data-line") == "2", err.text
    assert err.get_attribute("data-column"), err.text
    assert "line 2" in err.text, err.text
    b.shot("submit-error")
    b.check_console("submit view (invalid document)")

    # ... and a valid document is accepted and turns final.
    doc = (
        "@prefix ex:   <http://example.org/supply#> .\n"
        "@prefix prov: <http://www.w3.org/ns/prov#> .\n"
        "@prefix t:    <" + ex + "> .\n"
        "ex:batch-0042 a ex:ProductBatch ;\n"
        '    ex:product "Arabica green coffee" ;\n'
        "    prov:wasGeneratedBy ex:harvest-2026-11 .\n"
        "ex:harvest-2026-11 a prov:Activity ;\n"
        "    prov:wasAssociatedWith ex:farm-serra-verde .\n"
        f't:item-{marker} t:checkedBy "selenium" .\n'
    )
    b.set_value("#submit-data", doc)
    b.click("#submit-button")
    b.wait("tx accepted", lambda d: b.find("#submit-txid"))
    tx_id = b.text("#submit-txid")
    assert len(tx_id) == 64, tx_id
    b.wait("tx final in submit view", lambda d: b.find('#submit-status[data-status="final"]'))
    _, tx = node.json(f"/api/transactions/{tx_id}")
    assert tx["status"] == "final", tx
    b.check_console("submit view")
    b.shot("submit")
    log(f"submitted {tx_id}, final at height {tx['block_height']}")

    # Transaction view: the document, and the proof verified by the node.
    b.click("#submit-txid")
    b.wait("tx view ready", lambda d: b.find('#view[data-ready="tx"]'))
    b.wait("proof verified", lambda d: b.find('#verify-result [data-verified="true"]'))
    assert tx_id in b.d.find_element(By.CSS_SELECTOR, "#claim").get_attribute("textContent")
    assert f"item-{marker}" in b.text("#tx-data")
    assert "final" in b.text("#tx-status")
    assert "✗" not in b.text("#claim"), b.text("#claim")
    b.check_console("transaction view")
    b.d.execute_script("window.scrollTo(0, 0)")
    b.shot("transaction")
    # A tampered proof is refused with the reason.
    b.allowed = ["/api/proofs/verify - Failed to load resource: the server responded with a status of 422"]
    proof = json.loads(b.d.execute_script("return document.querySelector('#proof-json').value"))
    seal = proof["seal"]
    proof["seal"] = ("1" if seal[10] == "0" else "0").join([seal[:10], seal[11:]])
    b.set_value("#proof-json", json.dumps(proof, indent=2))
    b.click("#verify-button")
    b.wait("tampered proof refused", lambda d: b.find('#verify-result [data-verified="false"]'))
    assert "seal" in b.text("#verify-result"), b.text("#verify-result")
    b.check_console("transaction view (tampered proof)")
    b.d.execute_script("document.querySelector('#verify-result').scrollIntoView()")
    b.shot("transaction-tampered")

    # SPARQL view: a query for the submitted triple shows its row; an example query runs.
    b.visit(base, "sparql")
    b.set_value("#sparql-query", f"SELECT ?who ?g WHERE {{ GRAPH ?g {{ <{ex}item-{marker}> <{ex}checkedBy> ?who }} }}")
    b.click("#sparql-run")
    b.wait("sparql rows", lambda d: d.find_elements(By.CSS_SELECTOR, "#sparql-table tbody tr"))
    rows = b.d.find_elements(By.CSS_SELECTOR, "#sparql-table tbody tr")
    assert len(rows) == 1 and "selenium" in rows[0].text, [r.text for r in rows]
    assert "tx:" in rows[0].text, rows[0].text  # graph IRIs link to the transaction view
    b.set_value("#sparql-query", f'ASK {{ <{ex}item-{marker}> <{ex}checkedBy> "selenium" }}')
    b.click("#sparql-run")
    b.wait("ask true", lambda d: b.find('#sparql-boolean[data-value="true"]'))
    b.d.execute_script(
        "const s = document.querySelector('#sparql-examples');"
        "s.value = [...s.options].find(o => o.text.startsWith('The full history')).value;"
        "s.dispatchEvent(new Event('change'));"
    )
    b.click("#sparql-run")
    b.wait("example rows", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sparql-table tbody tr")) >= 3)
    b.check_console("sparql view")
    b.shot("sparql")

    # Chain view: live blocks, final flags; block detail with the transaction.
    b.visit(base, "chain")
    b.wait("blocks listed", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#blocks tbody tr")) >= 2)
    first = int(b.find("#blocks tbody tr").get_attribute("data-height"))
    b.wait("chain view live-updates", lambda d: int(b.find("#blocks tbody tr").get_attribute("data-height")) > first, timeout=10)
    assert "final" in b.text("#blocks")
    b.check_console("chain view")
    b.shot("chain")
    if b.find("#older").is_displayed():  # more than one page of blocks
        b.click("#older")
        b.wait("older page", lambda d: b.find('#view[data-ready="chain"]') and "Final blocks" in b.text("#view"))
    else:
        b.visit(base, "chain?to=5", "chain")
    assert "Final blocks" in b.text("#view"), b.text("#view")
    assert len(b.d.find_elements(By.CSS_SELECTOR, "#blocks tbody tr")) >= 2
    b.shot("chain-page")
    b.check_console("chain view (older page)")
    b.visit(base, f"block/{tx['block_height']}", "block")
    assert f"#/tx/{tx_id}" in b.d.find_element(By.CSS_SELECTOR, "#block-txs").get_attribute("innerHTML")
    b.check_console("block view")
    b.shot("block")
    b.find("#block-txs tbody tr").click()
    b.wait("tx view from block", lambda d: b.find('#verify-result [data-verified="true"]'))
    b.check_console("block → transaction")

    # Unknown routes degrade readably.
    b.visit(base, "nonsense", "notfound")
    b.check_console("not-found view")

    # Back on the network view, the charts have the samples taken meanwhile (tx/s shows the tx).
    b.visit(base, "network")
    b.wait("six chart samples", lambda d: d.execute_script("return window.provchainExplorer.state.samples.length") >= 6)
    b.wait("block rate plotted", lambda d: "blocks/s: 0.00" not in b.text("#charts") and "blocks/s: –" not in b.text("#charts"))
    b.check_console("network view (charts)")
    b.shot("network")


def auth_and_not_ready_checks(b, node, secret, base):
    # Alone, an authority of a 3-node network is not ready: the banner gives /ready's reason.
    b.allowed = ["/ready - Failed to load resource: the server responded with a status of 503"]
    b.d.get(base + "/#/network")
    b.wait("network ready", lambda d: b.find('#view[data-ready="network"]'))
    b.wait("not-ready banner", lambda d: b.find("#banner") and b.find("#banner").is_displayed())
    assert "no connected peers" in b.text("#banner"), b.text("#banner")
    b.shot("not-ready")
    b.check_console("network view (not ready)")

    # A write without a token asks for one; with it, the node accepts the transaction.
    b.allowed = [
        "/ready - Failed to load resource: the server responded with a status of 503",
        "/api/transactions - Failed to load resource: the server responded with a status of 401",
    ]
    b.d.execute_script("localStorage.removeItem('provchain.token')")
    b.visit(base, "submit")
    b.set_value("#submit-data", '<http://example.org/auth> <http://example.org/p> "token" .')
    b.click("#submit-button")
    b.wait("token dialog", lambda d: b.find("#token-dialog").is_displayed())
    assert "Bearer" in b.text("#token-dialog")
    b.find("#token-input").send_keys(mint_jwt(secret, "explorer-test"))
    b.shot("token-dialog")
    b.click("#token-save")
    b.wait("accepted with token", lambda d: b.find("#submit-txid"))
    tx_id = b.text("#submit-txid")
    _, tx = node.json(f"/api/transactions/{tx_id}")
    assert tx["client"] == "explorer-test", tx
    assert b.d.execute_script("return localStorage.getItem('provchain.token')"), "token kept"
    b.check_console("submit view with auth")
    b.shot("submit-auth")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", default=os.path.join(REPO, "target", "debug", "provchaind"))
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    ap.add_argument("--screenshots", default=os.path.join(REPO, "target", "explorer-screenshots"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dirs and logs")
    ap.add_argument("--assets", help="serve the page from this directory (e.g. node/assets/explorer) "
                    "through a local proxy instead of the binary's embedded copy, to iterate without rebuilding")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    for what, path in (("provchaind", binary), ("chromium", args.chromium), ("chromedriver", args.chromedriver)):
        if not os.path.exists(path):
            sys.exit(f"{what} not found at {path}")
    os.makedirs(args.screenshots, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="provchain-explorer-")
    started = time.time()
    nodes, browser, ok = [], None, False
    try:
        dev = Node(binary, workdir, "dev", ["--dev"])
        nodes.append(dev)
        browser = Browser(args.chromium, args.chromedriver, workdir, args.screenshots)
        proxy = AssetProxy(args.assets, dev) if args.assets else None
        dev_node_checks(browser, dev, proxy.base if proxy else dev.base)
        # Leave the page before its node stops: its polls would otherwise fail against the
        # stopped node and land in the next step's console log.
        browser.d.get("about:blank")
        browser.d.get_log("browser")
        if proxy:
            proxy.stop()
        dev.stop()

        secret = "explorer-test-secret-" + uuid.uuid4().hex
        auth = Node(
            binary, workdir, "auth",
            ["--config", os.path.join(REPO, "configs", "testnet", "node1.toml")],
            env={"JWT_SECRET": secret},
        )
        nodes.append(auth)
        proxy = AssetProxy(args.assets, auth) if args.assets else None
        auth_and_not_ready_checks(browser, auth, secret, proxy.base if proxy else auth.base)
        if proxy:
            proxy.stop()
        ok = True
    finally:
        if browser:
            browser.quit()
        for n in nodes:
            n.stop()
            if not ok:
                log(f"--- log of {n.data_dir}:\n{n.log_text()}")
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work dir kept: {workdir}")
    log(f"all explorer browser checks passed in {time.time() - started:.1f} s; screenshots in {args.screenshots}")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
