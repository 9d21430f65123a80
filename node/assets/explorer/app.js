// ProvChain explorer: a dependency-free single-page app over the node's HTTP API.
//
// Views (hash routes): #/network, #/chain, #/block/{height|hash}, #/tx/{id}, #/sparql, #/submit.
// Only paged endpoints are used (/api/blocks?limit=, /api/blocks/{id}, /api/blockchain/dump with
// from+limit), so the page stays fast on long chains. All node-supplied text is inserted as text
// nodes, never as HTML.
"use strict";

(function () {
  // ---------------------------------------------------------------------------------------------
  // Small helpers

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  /** el("tag.class#id", {attrs}, ...children): builds DOM; strings become text nodes. */
  function el(spec, attrs, ...children) {
    const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/i.exec(spec) || [null, spec, ""];
    const node = document.createElement(m[1]);
    for (const part of (m[2] || "").match(/[.#][\w-]+/g) || []) {
      if (part[0] === ".") node.classList.add(part.slice(1));
      else node.id = part.slice(1);
    }
    if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
      children.unshift(attrs);
      attrs = null;
    }
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k in node && typeof v !== "string") node[k] = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    append(node, children);
    return node;
  }

  function append(node, ...children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function replace(node, ...children) {
    node.textContent = "";
    return append(node, children);
  }

  const short = (h, n) => (h && h.length > 2 * (n || 8) + 1 ? h.slice(0, n || 8) + "…" + h.slice(-(n || 8) / 2) : h || "");
  const pill = (cls, text) => el("span.pill." + cls, text);
  const code = (text, title) => el("code.hash", { title: title || text }, text);

  function fmtTime(ms) {
    if (ms === undefined || ms === null) return "";
    const d = new Date(Number(ms));
    return d.toISOString().replace("T", " ").replace("Z", " UTC");
  }

  function ago(ms) {
    const s = Math.round((Date.now() - Number(ms)) / 1000);
    if (s < -1) return "in " + -s + " s";
    if (s < 60) return Math.max(s, 0) + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function fmtNum(x, digits) {
    if (x === null || x === undefined || !isFinite(x)) return "–";
    return Number(x).toFixed(digits === undefined ? 2 : digits);
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    if (s === Infinity) return "> 10 s";
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms";
    return s.toFixed(2) + " s";
  }

  // ---------------------------------------------------------------------------------------------
  // API access

  class ApiError extends Error {
    constructor(status, body, text) {
      const msg = body && typeof body === "object" && body.error ? body.error : text || "HTTP " + status;
      super(msg);
      this.status = status;
      this.body = body;
    }
  }

  async function request(path, opts) {
    let resp;
    try {
      resp = await fetch(path, Object.assign({ cache: "no-store" }, opts || {}));
    } catch (e) {
      const err = new ApiError(0, null, "cannot reach the node (" + e.message + ")");
      err.network = true;
      throw err;
    }
    const text = await resp.text();
    let body = null;
    const ct = resp.headers.get("content-type") || "";
    if (ct.includes("json")) {
      try {
        body = JSON.parse(text);
      } catch (_) {
        body = null;
      }
    }
    if (!resp.ok) throw new ApiError(resp.status, body, text);
    return { status: resp.status, body: body, text: text, contentType: ct };
  }

  const getJson = async (path) => (await request(path)).body;

  const TOKEN_KEY = "provchain.token";
  const token = {
    get: () => localStorage.getItem(TOKEN_KEY) || "",
    set: (t) => (t ? localStorage.setItem(TOKEN_KEY, t) : localStorage.removeItem(TOKEN_KEY)),
  };

  /** A write: sends the stored token; on 401 asks for one and retries once. */
  async function write(path, opts) {
    for (let attempt = 0; ; attempt++) {
      const headers = Object.assign({}, opts.headers || {});
      if (token.get()) headers.Authorization = "Bearer " + token.get();
      try {
        return await request(path, Object.assign({}, opts, { headers: headers }));
      } catch (e) {
        if (e.status !== 401 || attempt > 0) throw e;
        const t = await askToken(e.message);
        if (!t) throw e;
      }
    }
  }

  let tokenResolve = null;
  function askToken(reason) {
    const dlg = $("#token-dialog");
    $("#token-reason").textContent =
      (reason ? "The node refused the write: " + reason + ". " : "") +
      "Writes need a token (Authorization: Bearer); mint one with `provchain token`. It is kept in this browser's localStorage.";
    $("#token-input").value = token.get();
    dlg.hidden = false;
    $("#token-input").focus();
    return new Promise((resolve) => {
      tokenResolve = resolve;
    });
  }

  function closeToken(value) {
    $("#token-dialog").hidden = true;
    if (tokenResolve) tokenResolve(value);
    tokenResolve = null;
  }

  // ---------------------------------------------------------------------------------------------
  // Prometheus text parsing and histogram quantiles

  function parseMetrics(text) {
    const out = new Map();
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2]) for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
      if (!out.has(m[1])) out.set(m[1], []);
      out.get(m[1]).push({ labels: labels, value: parseFloat(m[3]) });
    }
    return out;
  }

  const metricSum = (metrics, name) => (metrics.get(name) || []).reduce((a, s) => a + s.value, 0);

  /** Cumulative buckets [{le, count}] of a histogram, sorted by le. */
  function buckets(metrics, name) {
    return (metrics.get(name + "_bucket") || [])
      .map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : parseFloat(s.labels.le), count: s.value }))
      .sort((a, b) => a.le - b.le);
  }

  /** Quantile q of cumulative buckets, interpolated linearly within the bucket (as Prometheus). */
  function quantile(bks, q) {
    if (!bks.length) return null;
    const total = bks[bks.length - 1].count;
    if (!(total > 0)) return null;
    const rank = q * total;
    let prevLe = 0;
    let prevCount = 0;
    for (const b of bks) {
      if (b.count >= rank) {
        if (b.le === Infinity) return prevLe > 0 ? Infinity : null;
        const inBucket = b.count - prevCount;
        return inBucket > 0 ? prevLe + ((b.le - prevLe) * (rank - prevCount)) / inBucket : b.le;
      }
      prevLe = b.le;
      prevCount = b.count;
    }
    return null;
  }

  const diffBuckets = (now, then) =>
    now.map((b, i) => ({ le: b.le, count: b.count - ((then && then[i] && then[i].count) || 0) }));

  // ---------------------------------------------------------------------------------------------
  // Peer ids from authority keys (libp2p ed25519 identity multihash, base58btc)

  const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  function base58(bytes) {
    let digits = [0];
    for (const byte of bytes) {
      let carry = byte;
      for (let i = 0; i < digits.length; i++) {
        carry += digits[i] << 8;
        digits[i] = carry % 58;
        carry = (carry / 58) | 0;
      }
      while (carry) {
        digits.push(carry % 58);
        carry = (carry / 58) | 0;
      }
    }
    let out = "";
    for (const byte of bytes) {
      if (byte !== 0) break;
      out += "1";
    }
    for (let i = digits.length - 1; i >= 0; i--) out += B58[digits[i]];
    return out;
  }

  function peerIdOf(pubkeyHex) {
    if (!/^[0-9a-f]{64}$/i.test(pubkeyHex || "")) return "";
    const bytes = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    for (let i = 0; i < 64; i += 2) bytes.push(parseInt(pubkeyHex.slice(i, i + 2), 16));
    return base58(bytes);
  }

  // ---------------------------------------------------------------------------------------------
  // Global state: status polling, readiness banner, metrics sampling for the charts

  const state = {
    status: null,
    governance: null, // GET /api/authorities: the set in force, scheduled changes, proposals
    samples: [], // {t, height, final, txFinal, missed, prop}
    ready: null,
  };
  const SAMPLE_MS = 2000;
  const SAMPLE_KEEP_MS = 10 * 60 * 1000;
  const listeners = new Set(); // called after each status refresh

  async function refreshStatus() {
    try {
      const [st, gov] = await Promise.all([getJson("/api/status"), getJson("/api/authorities").catch(() => null)]);
      state.status = st;
      state.governance = gov;
      state.statusError = null;
      const s = state.status;
      $("#head-info").textContent =
        s.network_id + " · height " + s.height + " · final " + s.finalized_height + " · " + s.peers + " peer" + (s.peers === 1 ? "" : "s");
      $("#footer-version").textContent = "provchaind " + s.version;
    } catch (e) {
      state.statusError = e;
      $("#head-info").textContent = "node unreachable";
    }
    updateBanner();
    for (const f of listeners) {
      try {
        f();
      } catch (e) {
        console.warn("status listener failed", e);
      }
    }
  }

  async function refreshReady() {
    try {
      const r = await fetch("/ready", { cache: "no-store" });
      let body = null;
      try {
        body = await r.json();
      } catch (_) {
        body = null;
      }
      state.ready = { ok: r.ok, body: body };
    } catch (e) {
      state.ready = { ok: false, body: null, unreachable: e.message };
    }
    updateBanner();
  }

  function updateBanner() {
    const b = $("#banner");
    let text = "";
    let bad = false;
    if (state.statusError && state.statusError.network) {
      text = "Cannot reach the node's API: " + state.statusError.message + ". Retrying…";
      bad = true;
    } else if (state.ready && !state.ready.ok) {
      const r = state.ready.body || {};
      text =
        "Node not ready: " + (r.reason || "unknown reason") +
        (r.peers !== undefined ? " · peers " + r.peers : "") +
        (r.height !== undefined ? " · height " + r.height : "") +
        (r.peer_best_height ? " · best peer height " + r.peer_best_height : "") +
        ". Data shown may be behind the network.";
    } else if (state.statusError) {
      text = "The node's API answered with an error: " + state.statusError.message;
      bad = true;
    }
    b.hidden = !text;
    b.classList.toggle("bad", bad);
    b.textContent = text;
  }

  async function sample() {
    try {
      const [st, mt] = await Promise.all([getJson("/api/status"), request("/metrics")]);
      const m = parseMetrics(mt.text);
      const now = Date.now();
      state.samples.push({
        t: now,
        height: st.height,
        final: st.finalized_height,
        txFinal: metricSum(m, "provchain_transactions_final_total"),
        missed: metricSum(m, "provchain_missed_slots_total"),
        prop: buckets(m, "provchain_block_propagation_seconds"),
      });
      while (state.samples.length && state.samples[0].t < now - SAMPLE_KEEP_MS) state.samples.shift();
      if (current.view === "network") renderCharts();
    } catch (_) {
      // The banner reports unreachability; charts just get a gap.
    }
  }

  /** The authority set in force (slot order); the genesis list while the node has not said. */
  function authoritySet() {
    if (state.governance && state.governance.authorities) return state.governance.authorities;
    return (state.status && state.status.authorities) || [];
  }

  // ---------------------------------------------------------------------------------------------
  // Router

  const current = { view: null, timers: [], gen: 0 };

  function every(ms, f) {
    const gen = current.gen;
    const id = setInterval(() => {
      if (gen === current.gen) f();
    }, ms);
    current.timers.push(id);
    return id;
  }

  function onStatus(f) {
    const gen = current.gen;
    const wrapped = () => {
      if (gen !== current.gen) listeners.delete(wrapped);
      else f();
    };
    listeners.add(wrapped);
  }

  /** True while the view started in generation `gen` is still on screen. */
  const alive = (gen) => gen === current.gen;

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, qs] = raw.split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { name: parts[0] || "network", arg: parts[1], query: new URLSearchParams(qs || "") };
  }

  const views = {};

  function route() {
    for (const t of current.timers) clearInterval(t);
    current.timers = [];
    current.gen++;
    const r = parseHash();
    const view = views[r.name] ? r.name : "notfound";
    current.view = view;
    const navName = { block: "chain", tx: "chain" }[view] || view;
    for (const a of $$("#nav a")) a.classList.toggle("active", a.dataset.view === navName);
    const main = $("#view");
    main.removeAttribute("data-ready");
    main.dataset.view = view;
    replace(main);
    document.title = "ProvChain · " + view;
    Promise.resolve(views[view](main, r, current.gen)).catch((e) => {
      if (alive(current.gen)) append(main, errorBox(e));
    });
  }

  const markReady = (main, gen) => {
    if (alive(gen)) main.dataset.ready = main.dataset.view;
  };

  function errorBox(e, extra) {
    const msg = e instanceof ApiError ? (e.status ? "HTTP " + e.status + ": " : "") + e.message : String(e && e.message ? e.message : e);
    return el("div.error", { role: "alert" }, msg, extra || null);
  }

  views.notfound = (main, r, gen) => {
    append(main, el("h1", "Not found"), el("p", "No view “" + r.name + "”. ", el("a", { href: "#/network" }, "Back to the network")));
    markReady(main, gen);
  };

  // ---------------------------------------------------------------------------------------------
  // Network view

  views.network = async (main, r, gen) => {
    const nodeCard = el("section.card#node-card", el("h2", "This node"), el("p.muted", "Loading…"));
    const slotCard = el("section.card#slot-card", el("h2", "Slot schedule"));
    const authCard = el("section.card#authorities-card", el("h2", "Authorities"), el("p.muted", "Loading…"));
    const peersCard = el("section.card#peers-card", el("h2", "Peers"), el("p.muted", "Loading…"));
    const chartsCard = el("section.card#charts-card", el("h2", "Activity"), el("div#charts"));
    append(main, el("h1", "Network"), el("div.grid", nodeCard, slotCard), el("div", { style: "height:16px" }), chartsCard, authCard, peersCard);

    let recent = [];
    let peers = [];
    let metrics = new Map();

    const renderNode = () => {
      const s = state.status;
      if (!s) return;
      const ready = state.ready ? (state.ready.ok ? pill("ok", "ready") : pill("warn", "not ready")) : pill("info", "…");
      replace(
        nodeCard,
        el("h2", "This node"),
        el(
          "dl.kv",
          el("dt", "node id"), el("dd#node-id", s.node_id),
          el("dt", "public key"), el("dd", code(s.public_key || "")),
          el("dt", "peer id"), el("dd", code(s.peer_id)),
          el("dt", "network"), el("dd", s.network_id),
          el("dt", "genesis hash"), el("dd", code(s.genesis_hash)),
          el("dt", "role"), el("dd", s.is_authority ? pill("info", "authority") : pill("warn", "observer"), " ", ready),
          el("dt", "best height"), el("dd", el("a", { href: "#/block/" + s.head_hash }, String(s.height)), " ", code(short(s.head_hash), s.head_hash)),
          el("dt", "final height"), el("dd#final-height", el("a", { href: "#/block/" + s.finalized_height }, String(s.finalized_height)), " ", code(short(s.finalized_hash), s.finalized_hash)),
          el("dt", "peers"), el("dd", String(s.peers), s.peer_best_height ? " (best peer height " + s.peer_best_height + ")" : ""),
          el("dt", "pending transactions"), el("dd", String(s.pending_transactions)),
          el("dt", "triples"), el("dd", s.triples === undefined ? "–" : String(s.triples)),
          el("dt", "block interval"), el("dd", s.block_interval_ms + " ms"),
          el("dt", "version"), el("dd", s.version)
        )
      );
    };

    const renderSlots = () => {
      const s = state.status;
      const set = authoritySet();
      if (!s || !set.length) return;
      const n = set.length;
      const interval = s.block_interval_ms || 1000;
      const now = Date.now();
      const slot = Math.floor(now / interval);
      const rows = [];
      for (let i = 0; i < 6; i++) {
        const sl = slot + i;
        const who = set[sl % n];
        const startMs = sl * interval;
        rows.push(
          el(
            "tr",
            i === 0 ? { class: "current" } : null,
            el("td.mono", String(sl)),
            el("td", i === 0 ? pill("ok", "now") : "in " + ((startMs - now) / 1000).toFixed(1) + " s"),
            el("td", "#" + (sl % n) + " ", code(short(who, 10), who), who === s.public_key ? " " : "", who === s.public_key ? pill("info", "this node") : "")
          )
        );
      }
      replace(
        slotCard,
        el("h2", "Slot schedule"),
        el("p.muted.small", "slot = ⌊now_ms / " + interval + "⌋, leader = authorities[slot mod " + n + "] (browser clock)"),
        el("table#leaders", el("thead", el("tr", el("th", "slot"), el("th", "when"), el("th", "leader"))), el("tbody", rows))
      );
    };

    const renderAuthorities = () => {
      const s = state.status;
      if (!s) return;
      const set = authoritySet();
      const n = set.length;
      const last = new Map();
      const missed = new Map();
      // Recent blocks are newest first; a gap between consecutive slots is missed by its leaders.
      const chain = recent.slice().sort((a, b) => a.height - b.height);
      for (let i = 0; i < chain.length; i++) {
        const b = chain[i];
        if (!last.has(b.proposer) || last.get(b.proposer).slot < b.slot) last.set(b.proposer, b);
        if (i > 0 && chain[i - 1].height === b.height - 1 && b.height > 1) {
          for (let sl = chain[i - 1].slot + 1; sl < b.slot && sl - chain[i - 1].slot < 10000; sl++) {
            const who = set[sl % n];
            missed.set(who, (missed.get(who) || 0) + 1);
          }
        }
      }
      const connected = new Set(peers.map((p) => p.peer_id));
      const totalMissed = metricSum(metrics, "provchain_missed_slots_total");
      const window = chain.length ? "heights " + chain[0].height + "–" + chain[chain.length - 1].height : "no blocks yet";
      replace(
        authCard,
        el("h2", "Authorities"),
        el("p.muted.small", "Missed slots on the best chain (this node's counter provchain_missed_slots_total): ", el("strong#missed-total", String(totalMissed)), ". Last sealed and missed per authority from the latest " + chain.length + " blocks (" + window + ")."),
        el(
          "table#authorities",
          el("thead", el("tr", el("th", "#"), el("th", "public key"), el("th", "peer id"), el("th", "link"), el("th", "last sealed"), el("th", "missed (recent)"))),
          el(
            "tbody",
            set.map((a, i) => {
              const pid = peerIdOf(a);
              const b = last.get(a);
              const link = a === s.public_key ? pill("info", "this node") : connected.has(pid) ? pill("ok", "connected") : pill("warn", "not connected");
              return el(
                "tr",
                el("td", String(i)),
                el("td", code(short(a, 12), a)),
                el("td", code(short(pid, 10), pid)),
                el("td", link),
                el("td", b ? [el("a", { href: "#/block/" + b.hash }, "slot " + b.slot), el("span.muted", " · #" + b.height + " · " + ago(b.timestamp_ms))] : el("span.muted", "none in window")),
                el("td", String(missed.get(a) || 0))
              );
            })
          )
        ),
        governanceInfo()
      );
    };

    // Scheduled set changes and open proposals (authority governance), when there are any.
    const governanceInfo = () => {
      const g = state.governance;
      if (!g) return null;
      const set = authoritySet();
      const who = (k) => (set.indexOf(k) >= 0 ? "#" + set.indexOf(k) : short(k, 8));
      return el(
        "div#governance",
        el("p.muted.small", "A block is final once " + g.finality_threshold + " of these " + set.length + " authorities sealed it or a block on top. The set changes by majority vote; changes take effect at heights that are multiples of " + g.epoch_length + "."),
        g.scheduled.length
          ? el(
              "table#scheduled",
              el("thead", el("tr", el("th", "scheduled change"), el("th", "key"), el("th", "decided at"), el("th", "in force from"))),
              el("tbody", g.scheduled.map((c) => el("tr", el("td", c.action), el("td", code(short(c.key, 12), c.key)), el("td", String(c.decided_at)), el("td", String(c.switch_at)))))
            )
          : null,
        g.proposals.length
          ? el(
              "table#proposals",
              el("thead", el("tr", el("th", "open proposal"), el("th", "change"), el("th", "proposer"), el("th", "support"), el("th", "expires at"))),
              el(
                "tbody",
                g.proposals.map((p) =>
                  el(
                    "tr",
                    el("td", code(short(p.id, 10), p.id)),
                    el("td", p.action + " ", code(short(p.key, 10), p.key)),
                    el("td", who(p.proposer)),
                    el("td", { title: p.supporters.map(who).join(", ") }, p.supporters.length + " / " + p.needed),
                    el("td", String(p.expires_at))
                  )
                )
              )
            )
          : el("p.muted.small", "No open proposals.")
      );
    };

    const renderPeers = () => {
      const body = peers.length
        ? el(
            "table#peers",
            el("thead", el("tr", el("th", "peer id"), el("th", "authority"), el("th", "direction"), el("th", "connected"), el("th", "addresses"))),
            el(
              "tbody",
              peers.map((p) =>
                el(
                  "tr",
                  el("td", code(short(p.peer_id, 12), p.peer_id)),
                  el("td", p.is_authority ? pill("info", "authority") : pill("warn", "observer")),
                  el("td", p.direction),
                  el("td.nowrap", p.connected_since_ms ? ago(p.connected_since_ms) : "–"),
                  el("td.mono.small", (p.addresses || []).join(" "))
                )
              )
            )
          )
        : el("p.muted#no-peers", "No connected peers" + (authoritySet().length === 1 ? " (a single-authority network needs none)." : "."));
      replace(peersCard, el("h2", "Peers (" + peers.length + ")"), body);
    };

    const loadSlow = async () => {
      const [b, p, m] = await Promise.allSettled([getJson("/api/blocks?limit=100"), getJson("/api/peers"), request("/metrics")]);
      if (!alive(gen)) return;
      if (b.status === "fulfilled") recent = b.value;
      if (p.status === "fulfilled") peers = p.value;
      if (m.status === "fulfilled") metrics = parseMetrics(m.value.text);
      renderAuthorities();
      renderPeers();
      const failed = [b, p, m].filter((x) => x.status === "rejected");
      if (failed.length) append(authCard, errorBox(failed[0].reason));
    };

    if (!state.status) await refreshStatus();
    if (!alive(gen)) return;
    if (state.statusError && !state.status) {
      replace(nodeCard, el("h2", "This node"), errorBox(state.statusError));
    }
    renderNode();
    renderSlots();
    renderCharts();
    await loadSlow();
    onStatus(renderNode);
    every(250, renderSlots);
    every(3000, loadSlow);
    markReady(main, gen);
  };

  // ---------------------------------------------------------------------------------------------
  // Charts (inline SVG)

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    for (const c of children) n.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    return n;
  }

  /** A line chart: series = [{name, color, points: [[t, y|null]]}]. */
  function lineChart(id, title, series, fmt) {
    const W = 600;
    const H = 120;
    const L = 44;
    const B = 16;
    const now = Date.now();
    // The x axis spans what this page has sampled: at least a minute, at most SAMPLE_KEEP_MS.
    const firstT = state.samples.length ? state.samples[0].t : now;
    const t0 = Math.min(now - 60000, Math.max(now - SAMPLE_KEEP_MS, firstT));
    const span = Math.round((now - t0) / 1000);
    let ymax = 0;
    for (const s of series) for (const p of s.points) if (p[1] !== null && isFinite(p[1])) ymax = Math.max(ymax, p[1]);
    ymax = ymax > 0 ? ymax * 1.15 : 1;
    const x = (t) => L + ((t - t0) / (now - t0)) * (W - L - 4);
    const y = (v) => H - B - (v / ymax) * (H - B - 8);
    const chart = svg("svg", { class: "chart", id: id, viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": title });
    chart.appendChild(svg("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }));
    chart.appendChild(svg("line", { class: "axis", x1: L, y1: 6, x2: L, y2: H - B }));
    chart.appendChild(svg("text", { x: L - 4, y: 12, "text-anchor": "end" }, fmt(ymax)));
    chart.appendChild(svg("text", { x: L - 4, y: H - B, "text-anchor": "end" }, fmt(0)));
    chart.appendChild(svg("text", { x: L, y: H - 3 }, span >= 120 ? "−" + Math.round(span / 60) + " min" : "−" + span + " s"));
    chart.appendChild(svg("text", { x: W - 4, y: H - 3, "text-anchor": "end" }, "now"));
    for (const s of series) {
      let d = "";
      let pen = false;
      for (const [t, v] of s.points) {
        if (v === null || !isFinite(v)) {
          pen = false;
          continue;
        }
        d += (pen ? "L" : "M") + x(t).toFixed(1) + " " + y(v).toFixed(1);
        pen = true;
      }
      if (d) chart.appendChild(svg("path", { d: d, fill: "none", stroke: s.color, "stroke-width": 1.6, "vector-effect": "non-scaling-stroke" }));
    }
    const latest = series.map((s) => {
      const p = s.points.filter((q) => q[1] !== null && isFinite(q[1])).pop();
      return el("span", el("i", { style: "background:" + s.color }), s.name + ": ", el("strong", p ? fmt(p[1]) : "–"));
    });
    return el("div.chart-box", el("div.small", el("strong", title)), chart, el("div.legend", latest));
  }

  function rateSeries(key, window) {
    const s = state.samples;
    const pts = [];
    for (let i = 1; i < s.length; i++) {
      const j = Math.max(0, i - window);
      const dt = (s[i].t - s[j].t) / 1000;
      const dv = s[i][key] - s[j][key];
      pts.push([s[i].t, dt > 0 && dv >= 0 ? dv / dt : null]);
    }
    return pts;
  }

  function renderCharts() {
    const box = $("#charts");
    if (!box) return;
    const s = state.samples;
    const win = 5; // samples (~10 s) per rate point
    const p50 = [];
    const p99 = [];
    for (let i = 0; i < s.length; i++) {
      const j = Math.max(0, i - 15); // ~30 s of observations
      const recent = i > 0 ? diffBuckets(s[i].prop, s[j].prop) : s[i].prop;
      p50.push([s[i].t, quantile(recent, 0.5)]);
      p99.push([s[i].t, quantile(recent, 0.99)]);
    }
    const last = s[s.length - 1];
    const overall = last ? [quantile(last.prop, 0.5), quantile(last.prop, 0.99)] : [null, null];
    const count = last && last.prop.length ? last.prop[last.prop.length - 1].count : 0;
    replace(
      box,
      el(
        "div.grid",
        lineChart("chart-blocks", "final blocks / s", [{ name: "blocks/s", color: "#1d4ed8", points: rateSeries("final", win) }], (v) => fmtNum(v, 2)),
        lineChart("chart-txs", "final transactions / s", [{ name: "tx/s", color: "#0f7b3f", points: rateSeries("txFinal", win) }], (v) => fmtNum(v, 2)),
        lineChart(
          "chart-propagation",
          "block propagation delay (imported blocks, ~30 s windows)",
          [
            { name: "p50", color: "#7c3aed", points: p50 },
            { name: "p99", color: "#dc2626", points: p99 },
          ],
          fmtSeconds
        )
      ),
      el(
        "p.muted.small#propagation-summary",
        "Sampled every " + SAMPLE_MS / 1000 + " s by this page since it opened (" + s.length + " samples). Propagation since the node started, from the provchain_block_propagation_seconds histogram (" + count + " blocks imported from peers): p50 ",
        el("strong", count ? fmtSeconds(overall[0]) : "–"),
        ", p99 ",
        el("strong", count ? fmtSeconds(overall[1]) : "–"),
        count ? "." : " (no blocks received from peers yet; a node sealing alone imports none)."
      )
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Chain view

  function proposerCell(pk) {
    const i = authoritySet().indexOf(pk);
    return el("td", i >= 0 ? "#" + i + " " : "", code(short(pk, 8), pk));
  }

  function blocksTable(blocks, seen) {
    return el(
      "table#blocks",
      el("thead", el("tr", el("th", "height"), el("th", "hash"), el("th", "slot"), el("th", "sealed"), el("th", "proposer"), el("th", "txs"), el("th", "state"))),
      el(
        "tbody",
        blocks.map((b) =>
          el(
            "tr.clickable",
            {
              class: seen && !seen.has(b.hash) ? "clickable fresh" : "clickable",
              dataset: { height: String(b.height), hash: b.hash },
              onclick: () => (location.hash = "#/block/" + b.hash),
            },
            el("td", el("a", { href: "#/block/" + b.hash }, String(b.height))),
            el("td", code(short(b.hash, 10), b.hash)),
            el("td.mono", String(b.slot)),
            el("td.nowrap", { title: fmtTime(b.timestamp_ms) }, ago(b.timestamp_ms)),
            proposerCell(b.proposer),
            el("td", String((b.transactions || []).length)),
            el("td", b.final === false ? pill("warn", "pending") : pill("ok", "final"))
          )
        )
      )
    );
  }

  const PAGE = 20;

  views.chain = async (main, r, gen) => {
    const to = r.query.get("to");
    const card = el("section.card");
    append(main, el("h1", "Chain"), card);
    if (to === null) {
      // Live: the latest blocks (pending first), polled every second. Only the table body and
      // the summary change, so links stay put under the pointer.
      const seen = new Set();
      let first = true;
      const summary = el("span.muted.small");
      const tableBox = el("div");
      const older = el("a#older", { href: "#/chain?to=0", hidden: true }, "← older blocks");
      const failure = el("div");
      append(card, el("h2", "Latest blocks ", pill("ok", "live"), " ", summary), failure, tableBox, el("div.pager", older));
      const load = async () => {
        let blocks;
        try {
          blocks = await getJson("/api/blocks?limit=" + PAGE);
        } catch (e) {
          if (alive(gen)) replace(failure, errorBox(e));
          return;
        }
        if (!alive(gen)) return;
        replace(failure);
        const lowest = blocks.length ? blocks[blocks.length - 1].height : 0;
        const pending = blocks.filter((b) => b.final === false).length;
        summary.textContent = pending + " pending, " + (blocks.length - pending) + " final; refreshes every second";
        replace(tableBox, blocksTable(blocks, first ? null : seen));
        older.hidden = !(lowest > 0);
        older.setAttribute("href", "#/chain?to=" + Math.max(0, lowest - 1));
        for (const b of blocks) seen.add(b.hash);
        first = false;
        markReady(main, gen);
      };
      await load();
      every(1000, load);
    } else {
      // A page of the final chain: heights (to-PAGE, to], genesis at the bottom.
      const top = Math.max(0, parseInt(to, 10) || 0);
      const from = Math.max(0, top - PAGE + 1);
      const blocks = await getJson("/api/blockchain/dump?from=" + from + "&limit=" + (top - from + 1));
      if (!alive(gen)) return;
      blocks.reverse();
      append(
        card,
        el("h2", "Final blocks " + from + "–" + top),
        blocksTable(blocks, null),
        el(
          "div.pager",
          el("a", { href: "#/chain" }, "latest"),
          state.status && top + PAGE > state.status.finalized_height ? null : el("a", { href: "#/chain?to=" + (top + PAGE) }, "newer →"),
          from > 0 ? el("a#older", { href: "#/chain?to=" + (from - 1) }, "← older") : null
        )
      );
      markReady(main, gen);
    }
  };

  // ---------------------------------------------------------------------------------------------
  // Block view

  views.block = async (main, r, gen) => {
    const id = r.arg || "";
    const b = await getJson("/api/blocks/" + encodeURIComponent(id) + "?full=true");
    if (!alive(gen)) return;
    const txs = b.transactions || [];
    append(
      main,
      el("h1", "Block " + b.height + " ", b.final === false ? pill("warn", "pending") : pill("ok", "final")),
      el(
        "section.card",
        el(
          "dl.kv#block-detail",
          el("dt", "hash"), el("dd", code(b.hash)),
          el("dt", "height"), el("dd", String(b.height), " · ", b.height > 0 ? el("a", { href: "#/block/" + (b.height - 1) }, "← previous") : null, " ", el("a", { href: "#/block/" + (b.height + 1) }, "next →")),
          el("dt", "parent"), el("dd", b.height > 0 ? el("a", { href: "#/block/" + b.parent_hash }, code(b.parent_hash)) : code(b.parent_hash)),
          el("dt", "slot"), el("dd", String(b.slot)),
          el("dt", "sealed"), el("dd", fmtTime(b.timestamp_ms), " (" + ago(b.timestamp_ms) + ")"),
          el("dt", "proposer"), el("dd", code(b.proposer)),
          el("dt", "tx root"), el("dd", code(b.tx_root)),
          b.gov_root ? [el("dt", "governance root"), el("dd", code(b.gov_root))] : null,
          el("dt", "seal"), el("dd", code(b.signature))
        )
      ),
      governanceCard(b.governance || []),
      el(
        "section.card",
        el("h2", "Transactions (" + txs.length + ")"),
        txs.length
          ? el(
              "table#block-txs",
              el("thead", el("tr", el("th", "#"), el("th", "tx id"), el("th", "format"), el("th", "submitted"), el("th", "client"), el("th", "size"), el("th", "first line"))),
              el(
                "tbody",
                txs.map((t, i) =>
                  el(
                    "tr.clickable",
                    { onclick: () => (location.hash = "#/tx/" + t.tx_id) },
                    el("td", String(i)),
                    el("td", el("a", { href: "#/tx/" + t.tx_id }, code(short(t.tx_id, 10), t.tx_id))),
                    el("td", t.format),
                    el("td.nowrap", { title: fmtTime(t.timestamp_ms) }, ago(t.timestamp_ms)),
                    el("td", t.client || el("span.muted", "–")),
                    el("td.nowrap", new Blob([t.data || ""]).size + " B"),
                    el("td.mono.small", (t.data || "").split("\n").find((l) => l.trim() && !/^\s*@?prefix/i.test(l)) || "")
                  )
                )
              )
            )
          : el("p.muted", "No transactions (an empty block keeps the slot schedule).")
      )
    );
    markReady(main, gen);
    if (b.final === false) every(2000, () => route());
  };

  /** A block's governance items (authority proposals and votes); nothing when it has none. */
  function governanceCard(items) {
    if (!items.length) return null;
    const set = authoritySet();
    const who = (k) => [set.indexOf(k) >= 0 ? "#" + set.indexOf(k) + " " : "", code(short(k, 8), k)];
    return el(
      "section.card",
      el("h2", "Governance (" + items.length + ")"),
      el(
        "table#block-governance",
        el("thead", el("tr", el("th", "#"), el("th", "kind"), el("th", "proposal"), el("th", "change"), el("th", "signer"), el("th", "item id"))),
        el(
          "tbody",
          items.map((g, i) =>
            el(
              "tr",
              el("td", String(i)),
              el("td", g.kind === "proposal" ? pill("info", "proposal") : pill("ok", "vote")),
              el("td", code(short(g.proposal, 10), g.proposal)),
              el("td", g.kind === "proposal" ? [g.action + " ", code(short(g.key, 10), g.key)] : el("span.muted", "supports the proposal")),
              el("td", who(g.signer)),
              el("td", code(short(g.id, 10), g.id))
            )
          )
        )
      )
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Transaction view

  function statusPill(status) {
    return pill({ final: "ok", included: "info", pending: "warn" }[status] || "bad", status);
  }

  views.tx = async (main, r, gen) => {
    const id = (r.arg || "").toLowerCase();
    const head = el("h1", "Transaction");
    const info = el("section.card#tx-info", el("p.muted", "Loading…"));
    const proofCard = el("section.card#proof-card", el("h2", "Inclusion proof"), el("p.muted", "Issued once the transaction is final."));
    const docCard = el("section.card#doc-card", el("h2", "RDF document"));
    append(main, head, info, proofCard, docCard);
    let tx = null;
    let proofLoaded = false;

    const load = async () => {
      try {
        tx = await getJson("/api/transactions/" + encodeURIComponent(id) + "?full=true");
      } catch (e) {
        if (alive(gen)) replace(info, errorBox(e));
        markReady(main, gen);
        return;
      }
      if (!alive(gen)) return;
      replace(head, "Transaction ", statusPill(tx.status));
      replace(
        info,
        el(
          "dl.kv",
          el("dt", "tx id"), el("dd#tx-id", code(tx.tx_id)),
          el("dt", "status"), el("dd#tx-status", { dataset: { status: tx.status } }, statusPill(tx.status), tx.status !== "final" ? el("span.muted", " (refreshing)") : ""),
          el("dt", "block"), el("dd", tx.block_hash ? [el("a", { href: "#/block/" + tx.block_hash }, "#" + tx.block_height), " ", code(short(tx.block_hash, 10), tx.block_hash)] : el("span.muted", "not yet sealed")),
          el("dt", "submitter"), el("dd", code(tx.submitter)),
          el("dt", "client"), el("dd", tx.client || el("span.muted", "– (no auth)")),
          el("dt", "submitted"), el("dd", fmtTime(tx.timestamp_ms)),
          el("dt", "format"), el("dd", tx.format),
          el("dt", "triples"), el("dd", tx.triples === null || tx.triples === undefined ? "–" : String(tx.triples)),
          el("dt", "canonical digest"), el("dd#tx-digest", tx.digest ? [code(short(tx.digest, 16), tx.digest), " ", el("a", { href: "/api/transactions?digest=" + tx.digest }, "same statements")] : el("span.muted", tx.digest_unavailable || "–")),
          el("dt", "named graph"), el("dd", code("urn:provchain:tx:" + tx.tx_id))
        )
      );
      if (!docCard.dataset.filled) {
        docCard.dataset.filled = "1";
        append(docCard, el("pre#tx-data", tx.data || ""));
      }
      if (tx.status === "final" && !proofLoaded) {
        proofLoaded = true;
        await loadProof();
      }
      markReady(main, gen);
    };

    const loadProof = async () => {
      let proof;
      try {
        proof = await getJson("/api/transactions/" + encodeURIComponent(id) + "/proof");
      } catch (e) {
        if (alive(gen)) replace(proofCard, el("h2", "Inclusion proof"), errorBox(e));
        return;
      }
      if (!alive(gen)) return;
      const area = el("textarea#proof-json", { spellcheck: "false", rows: 14 }, JSON.stringify(proof, null, 2));
      const result = el("div#verify-result");
      const button = el("button#verify-button", { type: "button" }, "Verify");
      const verify = async () => {
        button.disabled = true;
        replace(result, el("p.muted", "Verifying…"));
        let claim;
        try {
          const resp = await request("/api/proofs/verify", { method: "POST", headers: { "Content-Type": "application/json" }, body: area.value });
          claim = resp.body;
        } catch (e) {
          replace(result, el("div.error.verify-failed", { dataset: { verified: "false" } }, "✗ The proof does not hold: " + e.message));
          button.disabled = false;
          return;
        }
        button.disabled = false;
        const s = state.status || {};
        const checks = [
          ["transaction id", claim.tx_id === tx.tx_id],
          ["block hash", claim.block_hash === tx.block_hash],
          ["document", claim.data === tx.data],
          ["genesis hash of this node's network", claim.genesis_hash === s.genesis_hash],
        ];
        replace(
          result,
          el("div.success", { dataset: { verified: "true" } }, "✓ Valid: every hash and signature checks; sealed by an authority that led slot " + claim.slot + "."),
          el(
            "dl.kv#claim",
            el("dt", "network"), el("dd", claim.network_id),
            el("dt", "genesis hash"), el("dd", code(claim.genesis_hash)),
            el("dt", "tx id"), el("dd", code(claim.tx_id)),
            el("dt", "submitter"), el("dd", code(claim.submitter)),
            el("dt", "client"), el("dd", claim.client || "–"),
            el("dt", "submitted at"), el("dd", fmtTime(claim.submitted_at_ms)),
            el("dt", "block"), el("dd", "#" + claim.block_height + " ", code(short(claim.block_hash, 10), claim.block_hash)),
            el("dt", "slot"), el("dd", String(claim.slot)),
            el("dt", "sealed at"), el("dd", fmtTime(claim.sealed_at_ms)),
            el("dt", "proposer"), el("dd", code(claim.proposer)),
            el("dt", "matches"), el("dd", checks.map(([what, ok]) => el("div", ok ? pill("ok", "✓") : pill("bad", "✗"), " " + what)))
          ),
          el("p.muted.small", "The node checked this proof. To check it without trusting the node: save the JSON and run ", el("code", "provchain verify --proof proof.json --genesis-hash <the network's genesis hash>"), ".")
        );
      };
      button.addEventListener("click", verify);
      const download = el("a", { href: URL.createObjectURL(new Blob([JSON.stringify(proof, null, 2)], { type: "application/json" })), download: "proof-" + id.slice(0, 12) + ".json" }, "download proof.json");
      replace(
        proofCard,
        el("h2", "Inclusion proof"),
        el("p.muted.small", "Merkle path from the transaction to the block's tx_root, the block header and seal, and the genesis parameters. Edit it to see a tampered proof fail."),
        area,
        el("div.row", button, download),
        result
      );
      await verify();
    };

    await load();
    if (!tx || tx.status !== "final") {
      const poll = every(1000, async () => {
        await load();
        if (tx && tx.status === "final") clearInterval(poll);
      });
    }
  };

  // ---------------------------------------------------------------------------------------------
  // SPARQL view

  const PROV = "PREFIX prov: <http://www.w3.org/ns/prov#>\nPREFIX pc:   <urn:provchain:vocab#>\n";
  function examples() {
    const authority = authoritySet()[0] || "0b9a56997d7c699233eae4eb26fc3b5165f75c76631ee7a91ea802aacee85c4a";
    const today = new Date().toISOString().slice(0, 10);
    return [
      {
        name: "Latest transactions",
        query: PROV + "SELECT ?tx ?submitter ?when ?height WHERE {\n  GRAPH <urn:provchain:chain> {\n    ?tx prov:wasAttributedTo ?submitter ;\n        prov:generatedAtTime ?when ;\n        pc:inBlock ?block .\n    ?block pc:height ?height .\n  }\n}\nORDER BY DESC(?height)\nLIMIT 20",
      },
      {
        name: "Who asserted a triple, and when",
        query: PROV + "SELECT ?tx ?submitter ?when ?height WHERE {\n  GRAPH ?tx { <http://example.org/supply#batch-0042> <http://example.org/supply#location> ?place }\n  GRAPH <urn:provchain:chain> {\n    ?tx prov:wasAttributedTo ?submitter ;\n        prov:generatedAtTime ?when ;\n        pc:inBlock ?block .\n    ?block pc:height ?height .\n  }\n}",
      },
      {
        name: "Everything one authority sealed today",
        query: PROV + "SELECT ?height ?tx WHERE {\n  GRAPH <urn:provchain:chain> {\n    ?block pc:proposer <urn:provchain:node:" + authority + "> ;\n           pc:height ?height ;\n           prov:generatedAtTime ?sealed .\n    ?tx pc:inBlock ?block .\n    FILTER (STRSTARTS(STR(?sealed), \"" + today + "\"))\n  }\n}\nORDER BY ?height",
      },
      {
        name: "The full history of one product batch",
        query: PROV + "SELECT ?when ?tx ?statement ?value WHERE {\n  {\n    GRAPH ?tx { <http://example.org/supply#batch-0042> ?statement ?value }\n  } UNION {\n    GRAPH ?tx { ?value prov:used <http://example.org/supply#batch-0042> }\n    BIND (prov:used AS ?statement)\n  }\n  GRAPH <urn:provchain:chain> { ?tx prov:generatedAtTime ?when }\n}\nORDER BY ?when",
      },
      { name: "Is a triple asserted? (ASK)", query: 'ASK { <http://test> <http://p> "v" }' },
      {
        name: "Triples per transaction",
        query: PROV + "SELECT ?tx ?count WHERE {\n  GRAPH <urn:provchain:chain> { ?tx pc:tripleCount ?count }\n}\nORDER BY DESC(?count)\nLIMIT 20",
      },
    ];
  }

  function termCell(t) {
    if (!t) return el("td.muted", "");
    if (t.type === "uri") {
      const v = t.value;
      let m;
      if ((m = /^urn:provchain:tx:([0-9a-f]{64})$/.exec(v))) return el("td", el("a", { href: "#/tx/" + m[1], title: v }, "tx:" + short(m[1], 10)));
      if ((m = /^urn:provchain:block:([0-9a-f]{64})$/.exec(v))) return el("td", el("a", { href: "#/block/" + m[1], title: v }, "block:" + short(m[1], 10)));
      return el("td.mono.small", "<" + v + ">");
    }
    if (t.type === "bnode") return el("td.mono.small", "_:" + t.value);
    const dt = t.datatype ? t.datatype.replace("http://www.w3.org/2001/XMLSchema#", "xsd:") : "";
    return el("td", t.value, t["xml:lang"] ? el("span.muted", "@" + t["xml:lang"]) : dt && dt !== "xsd:string" ? el("span.muted.small", " ^^" + dt) : null);
  }

  const SPARQL_KEY = "provchain.sparql";

  views.sparql = async (main, r, gen) => {
    if (!state.status) await refreshStatus();
    const ex = examples();
    const area = el("textarea#sparql-query", { spellcheck: "false", rows: 12 }, r.query.get("q") || sessionStorage.getItem(SPARQL_KEY) || ex[0].query);
    const select = el(
      "select#sparql-examples",
      { "aria-label": "example queries" },
      el("option", { value: "" }, "Examples (docs/PROVENANCE.md)…"),
      ex.map((e, i) => el("option", { value: String(i) }, e.name))
    );
    const run = el("button#sparql-run", { type: "button" }, "Run query");
    const out = el("div#sparql-results");
    const timing = el("span.muted.small#sparql-timing");
    select.addEventListener("change", () => {
      if (select.value !== "") {
        area.value = ex[Number(select.value)].query;
        sessionStorage.setItem(SPARQL_KEY, area.value);
      }
    });
    const exec = async () => {
      sessionStorage.setItem(SPARQL_KEY, area.value);
      run.disabled = true;
      replace(out, el("p.muted", "Running…"));
      const started = performance.now();
      let resp;
      try {
        resp = await request("/sparql", {
          method: "POST",
          headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/sparql-results+json" },
          body: new URLSearchParams({ query: area.value }).toString(),
        });
      } catch (e) {
        run.disabled = false;
        if (alive(gen)) replace(out, errorBox(e));
        return;
      }
      run.disabled = false;
      if (!alive(gen)) return;
      timing.textContent = Math.round(performance.now() - started) + " ms";
      const res = resp.body;
      if (res && typeof res.boolean === "boolean") {
        replace(out, el("p#sparql-boolean", { dataset: { value: String(res.boolean) } }, "ASK → ", res.boolean ? pill("ok", "true") : pill("bad", "false")));
      } else if (res && res.head && res.results) {
        const vars = res.head.vars || [];
        const rows = res.results.bindings || [];
        replace(
          out,
          el("p.muted.small#sparql-count", rows.length + " row" + (rows.length === 1 ? "" : "s")),
          el("table#sparql-table", el("thead", el("tr", vars.map((v) => el("th", "?" + v)))), el("tbody", rows.map((b) => el("tr", vars.map((v) => termCell(b[v]))))))
        );
      } else {
        replace(out, el("p.muted", "Result (" + resp.contentType + "):"), el("pre", resp.text));
      }
    };
    run.addEventListener("click", exec);
    area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        exec();
      }
    });
    append(
      main,
      el("h1", "SPARQL"),
      el(
        "section.card",
        el("p.muted.small", "The default graph is the union of all graphs; each transaction's triples are in ", el("code", "urn:provchain:tx:<id>"), ", chain metadata (PROV-O) in ", el("code", "urn:provchain:chain"), ". Ctrl+Enter runs."),
        area,
        el("div.row", run, select, timing)
      ),
      el("section.card", el("h2", "Results"), out)
    );
    markReady(main, gen);
  };

  // ---------------------------------------------------------------------------------------------
  // Submit view

  const SAMPLE_TTL =
    "@prefix ex:   <http://example.org/supply#> .\n@prefix prov: <http://www.w3.org/ns/prov#> .\nex:batch-0042 a ex:ProductBatch ;\n    ex:product \"Arabica green coffee\" ;\n    prov:wasGeneratedBy ex:harvest-2026-11 .\nex:harvest-2026-11 a prov:Activity ;\n    prov:wasAssociatedWith ex:farm-serra-verde .\n";

  function excerpt(text, line, column) {
    const lines = text.split("\n");
    const l = lines[line - 1];
    if (l === undefined) return null;
    const c = Math.max(1, Math.min(column || 1, l.length + 1));
    return el("pre.excerpt", String(line).padStart(4) + " | " + l.slice(0, c - 1), el("mark", l.slice(c - 1, c) || " "), l.slice(c), "\n" + " ".repeat(7 + c - 1) + "^");
  }

  views.submit = async (main, r, gen) => {
    const area = el("textarea#submit-data", { spellcheck: "false", rows: 14 }, sessionStorage.getItem("provchain.submit") || SAMPLE_TTL);
    const format = el(
      "select#submit-format",
      { "aria-label": "format" },
      el("option", { value: "turtle" }, "Turtle"),
      el("option", { value: "n-triples" }, "N-Triples"),
      el("option", { value: "n-quads" }, "N-Quads")
    );
    const button = el("button#submit-button", { type: "button" }, "Submit transaction");
    const result = el("div#submit-result");
    area.addEventListener("input", () => sessionStorage.setItem("provchain.submit", area.value));
    const submit = async () => {
      button.disabled = true;
      replace(result, el("p.muted", "Submitting…"));
      let resp;
      try {
        resp = await write("/api/transactions", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ data: area.value, format: format.value }),
        });
      } catch (e) {
        button.disabled = false;
        if (!alive(gen)) return;
        const b = e.body || {};
        let hint = null;
        if (e.status === 400 && b.line) hint = excerpt(area.value, b.line, b.column);
        else if (e.status === 401) hint = el("div", "Set a token with the ", el("a", { href: "#", onclick: (ev) => (ev.preventDefault(), askToken("")) }, "token"), " button and try again.");
        else if (e.status === 503) hint = el("div", "The node's transaction pool is full or the node is shutting down; retry shortly.");
        replace(
          result,
          el(
            "div.error#submit-error",
            { role: "alert", dataset: { line: b.line || "", column: b.column || "" } },
            "Rejected (HTTP " + (e.status || "–") + "): " + e.message,
            b.line ? el("div", el("strong", "at line " + b.line + (b.column ? ", column " + b.column : ""))) : null,
            hint
          )
        );
        if (b.line) focusLine(area, b.line, b.column);
        return;
      }
      button.disabled = false;
      const id = resp.body.tx_id;
      const st = el("span#submit-status", { dataset: { status: "pending" } }, statusPill("pending"));
      const where = el("span#submit-block");
      replace(
        result,
        el(
          "div.success",
          "Accepted: ",
          el("a#submit-txid", { href: "#/tx/" + id }, code(id)),
          " · " + resp.body.triples + " triple" + (resp.body.triples === 1 ? "" : "s") + " · ",
          st,
          " ",
          where
        )
      );
      const started = Date.now();
      const poll = every(500, async () => {
        let t;
        try {
          t = await getJson("/api/transactions/" + id);
        } catch (_) {
          return;
        }
        if (!alive(gen)) return;
        replace(st, statusPill(t.status));
        st.dataset.status = t.status;
        if (t.block_hash) replace(where, "in block ", el("a", { href: "#/block/" + t.block_hash }, "#" + t.block_height));
        if (t.status === "final") {
          clearInterval(poll);
          append(where, el("span.muted", " · final after " + ((Date.now() - started) / 1000).toFixed(1) + " s"));
        }
      });
    };
    button.addEventListener("click", submit);
    append(
      main,
      el("h1", "Submit"),
      el(
        "section.card",
        el("p.muted.small", "Paste an RDF document; the node parses it (errors come back with line and column), signs it and seals it into the next block of its slot."),
        area,
        el("div.row", format, button, el("button.secondary#submit-sample", { type: "button", onclick: () => ((area.value = SAMPLE_TTL), (format.value = "turtle")) }, "Example")),
        result
      )
    );
    markReady(main, gen);
  };

  function focusLine(area, line, column) {
    const lines = area.value.split("\n");
    let pos = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    pos += Math.max(0, (column || 1) - 1);
    area.focus();
    area.setSelectionRange(pos, Math.min(pos + 1, area.value.length));
  }

  // ---------------------------------------------------------------------------------------------
  // Search, token dialog, start-up

  async function search(q) {
    q = q.trim();
    if (!q) return;
    if (/^\d+$/.test(q)) {
      location.hash = "#/block/" + q;
      return;
    }
    const hex = q.replace(/^urn:provchain:(tx|block):/, "").toLowerCase();
    if (/^[0-9a-f]{64}$/.test(hex)) {
      if (/^urn:provchain:block:/.test(q)) {
        location.hash = "#/block/" + hex;
        return;
      }
      try {
        await request("/api/transactions/" + hex);
        location.hash = "#/tx/" + hex;
      } catch (_) {
        location.hash = "#/block/" + hex;
      }
      return;
    }
    alert("Enter a block height, a block hash or a transaction id (64 hex digits).");
  }

  function init() {
    $("#search").addEventListener("submit", (e) => {
      e.preventDefault();
      search($("#search-input").value);
    });
    $("#token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const t = $("#token-input").value.trim();
      token.set(t);
      closeToken(t || null);
    });
    $("#token-cancel").addEventListener("click", () => closeToken(null));
    $("#token-clear").addEventListener("click", () => {
      token.set("");
      $("#token-input").value = "";
      closeToken(null);
    });
    $("#token-button").addEventListener("click", () => askToken(""));
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !$("#token-dialog").hidden) closeToken(null);
    });
    window.addEventListener("hashchange", route);
    refreshStatus();
    refreshReady();
    sample();
    setInterval(refreshStatus, 1000);
    setInterval(refreshReady, 5000);
    setInterval(sample, SAMPLE_MS);
    route();
  }

  // Exposed for tests and the console.
  window.provchainExplorer = { parseMetrics: parseMetrics, quantile: quantile, peerIdOf: peerIdOf, state: state };

  init();
})();
