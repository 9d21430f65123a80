#!/usr/bin/env python3
"""Validates the monitoring configuration shipped with the compose testnet against a live node.

    testnet/monitoring-check.py path/to/provchaind

The Prometheus and Grafana images cannot be pulled on machines without registry access, so this
checks what can be checked without them:

* testnet/docker-compose.yml, monitoring/prometheus.yml and the Grafana provisioning files parse
  as YAML, the dashboard as JSON;
* the `monitoring` profile holds prometheus and grafana, and every file they mount exists;
* Prometheus scrapes every node service on the port the nodes serve metrics on;
* the Grafana datasource points at the prometheus service and its uid is the one the dashboard
  panels use; the dashboard provider reads the directory the dashboards are mounted at; panels
  have a position and a query, and a legend names only labels its aggregation keeps;
* every `provchain_*` series named in a dashboard expression exists in the /metrics output of a
  real node (started here on free loopback ports). Histograms count as their
  `_bucket`/`_sum`/`_count` series, counters as `_total`. The live node is node1 of a loopback
  testnet in which node3's clock runs 30 s ahead, so labelled families that only appear once
  used (blocks rejected by reason) are present too.

Exits non-zero with one line per problem.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("monitoring-check: PyYAML is missing (apt-get install python3-yaml)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COMPOSE = os.path.join(HERE, "docker-compose.yml")
PROMETHEUS = os.path.join(HERE, "monitoring", "prometheus.yml")
GRAFANA = os.path.join(HERE, "monitoring", "grafana")
NODES = ("node1", "node2", "node3")

problems = []


def problem(msg):
    problems.append(msg)
    print(f"  FAIL: {msg}", file=sys.stderr)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return env


def mounts(service):
    """(source, target) of each bind mount in a service's short-syntax volumes."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            if len(parts) >= 2 and parts[0].startswith((".", "/")):
                out.append((parts[0], parts[1]))
    return out


def check_files():
    """Static checks; returns the set of datasource uids the dashboards may use."""
    compose = load_yaml(COMPOSE)
    services = compose.get("services") or {}
    for n in NODES:
        if n not in services:
            problem(f"docker-compose.yml has no service {n}")
    for s in ("prometheus", "grafana"):
        svc = services.get(s)
        if svc is None:
            problem(f"docker-compose.yml has no {s} service")
            continue
        if "monitoring" not in (svc.get("profiles") or []):
            problem(f"service {s} is not in the monitoring profile")
        for src, _ in mounts(svc):
            if not os.path.exists(os.path.join(HERE, src)):
                problem(f"service {s} mounts {src}, which does not exist under testnet/")

    # Prometheus scrapes every node on its metrics port.
    prom = load_yaml(PROMETHEUS)
    targets = set()
    for job in prom.get("scrape_configs") or []:
        if job.get("metrics_path", "/metrics") != "/metrics":
            problem(f"scrape job {job.get('job_name')} uses metrics_path {job['metrics_path']}")
        for sc in job.get("static_configs") or []:
            targets.update(sc.get("targets") or [])
    for n in NODES:
        port = str(env_of(services.get(n, {})).get("PROVCHAIN_METRICS__PORT", "9090"))
        if f"{n}:{port}" not in targets:
            problem(f"prometheus.yml does not scrape {n}:{port} (targets: {sorted(targets)})")

    # Grafana: datasource -> prometheus service; provider path -> dashboards mount.
    grafana_mounts = dict((t, s) for s, t in mounts(services.get("grafana", {})))
    uids = set()
    ds_dir = os.path.join(GRAFANA, "provisioning", "datasources")
    for f in sorted(os.listdir(ds_dir)):
        for ds in load_yaml(os.path.join(ds_dir, f)).get("datasources") or []:
            uids.add(ds.get("uid"))
            if ds.get("type") == "prometheus" and not re.match(
                r"^https?://prometheus:9090/?$", ds.get("url", "")
            ):
                problem(f"datasource {ds.get('name')} url {ds.get('url')} is not the prometheus service")
    db_dir = os.path.join(GRAFANA, "provisioning", "dashboards")
    for f in sorted(os.listdir(db_dir)):
        for p in load_yaml(os.path.join(db_dir, f)).get("providers") or []:
            path = (p.get("options") or {}).get("path")
            if path not in grafana_mounts:
                problem(f"dashboard provider {p.get('name')} reads {path}, which grafana does not mount")
            elif os.path.normpath(os.path.join(HERE, grafana_mounts[path])) != os.path.join(GRAFANA, "dashboards"):
                problem(f"dashboard provider path {path} is not testnet/monitoring/grafana/dashboards")
    return uids


def dashboard_exprs(uids):
    """{metric name: [panel titles]} over every dashboard, after structural checks."""
    used = {}
    ddir = os.path.join(GRAFANA, "dashboards")
    files = [f for f in sorted(os.listdir(ddir)) if f.endswith(".json")]
    if not files:
        problem("no dashboard JSON under testnet/monitoring/grafana/dashboards")
    for f in files:
        with open(os.path.join(ddir, f), encoding="utf-8") as fh:
            dash = json.load(fh)
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)):
            problem(f"{f}: duplicate panel ids {ids}")
        for panel in dash.get("panels", []):
            title = panel.get("title", "?")
            uid = (panel.get("datasource") or {}).get("uid")
            if uid not in uids:
                problem(f"{f}: panel '{title}' uses datasource uid {uid}, not provisioned ({uids})")
            if "gridPos" not in panel:
                problem(f"{f}: panel '{title}' has no gridPos")
            targets = panel.get("targets") or []
            if not targets:
                problem(f"{f}: panel '{title}' has no query")
            for t in targets:
                expr = t.get("expr", "")
                if expr.count("(") != expr.count(")") or expr.count("[") != expr.count("]"):
                    problem(f"{f}: panel '{title}': unbalanced brackets in {expr!r}")
                # An aggregation keeps only its `by` labels: the legend may use no other.
                by = re.findall(r"\bby\s*\(([^)]*)\)", expr)
                if by:
                    kept = {l.strip() for b in by for l in b.split(",")} - {"le"}
                    legend = set(re.findall(r"{{\s*(\w+)\s*}}", t.get("legendFormat", "")))
                    if not legend <= kept:
                        problem(f"{f}: panel '{title}': legend uses {sorted(legend - kept)}, "
                                f"which {expr!r} aggregates away")
                names = re.findall(r"\bprovchain_[a-zA-Z0-9_]+", expr)
                if not names:
                    problem(f"{f}: panel '{title}' queries no provchain_ metric: {expr!r}")
                for name in names:
                    used.setdefault(name, []).append(title)
    return used


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def wait_for(what, cond, secs, procs, logs):
    deadline = time.time() + secs
    while True:
        try:
            if cond():
                return
        except Exception:
            pass
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            for name, path in logs:
                with open(path, encoding="utf-8", errors="replace") as f:
                    sys.stderr.write(f"--- {name} log (tail)\n{f.read()[-2000:]}")
            sys.exit(f"monitoring-check: timed out waiting for {what}")
        time.sleep(0.2)


def live_series(binary):
    """Series names a real node exposes on its metrics port.

    Three testnet authorities on free loopback ports (configs/testnet, env overrides), node3 with
    its clock 30 s ahead (consensus.clock_offset_ms, the skew-testing knob) so node1 rejects its
    blocks: labelled families such as provchain_blocks_rejected_total only appear once a label
    set was used. node1 and node2 still finalize; a transaction and a few API calls on node1
    fill the transaction and HTTP families. node1's metrics port is then scraped.
    """
    work = tempfile.mkdtemp(prefix="provchain-moncheck-")
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]  # (api, metrics, p2p)
    procs, logs = [], []
    try:
        for i in range(3):
            api, met, p2p = ports[i]
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("PROVCHAIN_") and k not in ("CONFIG_FILE", "JWT_SECRET")}
            env.update({
                "RUST_LOG": "warn",
                "PROVCHAIN_DATA_DIR": os.path.join(work, f"node{i + 1}"),
                "PROVCHAIN_PORT": str(p2p),
                "PROVCHAIN_WEB__PORT": str(api),
                "PROVCHAIN_METRICS__PORT": str(met),
                "PROVCHAIN_PEERS": "" if i == 0 else f"127.0.0.1:{ports[0][2]}",
            })
            if i == 2:
                env["PROVCHAIN_CONSENSUS__CLOCK_OFFSET_MS"] = "30000"
            path = os.path.join(work, f"node{i + 1}.log")
            logs.append((f"node{i + 1}", path))
            with open(path, "w") as log:
                procs.append(subprocess.Popen(
                    [binary, "--config", os.path.join(ROOT, "configs", "testnet", f"node{i + 1}.toml")],
                    stdout=log, stderr=subprocess.STDOUT, env=env))
        api, met = ports[0][0], ports[0][1]
        base = f"http://127.0.0.1:{api}"

        def status():
            return json.loads(http(f"{base}/api/status"))

        wait_for("node1 to finalize a block with node2", lambda: status()["finalized_height"] >= 1,
                 30, procs, logs)
        tx = json.loads(http(f"{base}/api/transactions",
                             data=b'{"data":"<http://test> <http://p> \\"v\\" ."}',
                             headers={"Content-Type": "application/json"}))["tx_id"]
        wait_for("the transaction to be final on node1",
                 lambda: json.loads(http(f"{base}/api/transactions/{tx}"))["status"] == "final",
                 30, procs, logs)
        wait_for("node1 to reject a block of the skewed node3",
                 lambda: "provchain_blocks_rejected_total{" in http(f"http://127.0.0.1:{met}/metrics"),
                 30, procs, logs)
        http(f"{base}/api/peers")
        text = http(f"http://127.0.0.1:{met}/metrics")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)

    series = set()
    suffixes = {
        "counter": ["_total", "_created"],
        "gauge": [""],
        "histogram": ["_bucket", "_sum", "_count", "_created"],
        "summary": ["", "_sum", "_count", "_created"],
        "info": ["_info"],
        "unknown": [""],
    }
    for line in text.splitlines():
        m = re.match(r"^# TYPE (\S+) (\S+)", line)
        if m:
            series.update(m.group(1) + s for s in suffixes.get(m.group(2), [""]))
        elif line and not line.startswith("#"):
            series.add(re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return series


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: testnet/monitoring-check.py path/to/provchaind")
    print("monitoring-check: static checks of compose, prometheus and grafana files")
    uids = check_files()
    used = dashboard_exprs(uids)
    print(f"monitoring-check: dashboard uses {len(used)} metrics; starting a 3-node loopback testnet")
    series = live_series(sys.argv[1])
    provchain = sorted(s for s in series if s.startswith("provchain_"))
    if not provchain:
        problem("the node's /metrics has no provchain_ series")
    for name, panels in sorted(used.items()):
        if name in series:
            print(f"  ok: {name}")
        else:
            near = [s for s in provchain if s.split("_")[1] == name.split("_")[1]]
            problem(f"{name} (panels: {', '.join(sorted(set(panels)))}) is not in /metrics; "
                    f"similar: {near[:6]}")
    if problems:
        sys.exit(f"monitoring-check: {len(problems)} problem(s)")
    print("monitoring-check: passed")


if __name__ == "__main__":
    main()
