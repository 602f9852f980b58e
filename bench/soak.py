#!/usr/bin/env python3
"""Helpers of bench/soak.sh (see bench/README.md, "Soak").

  soak.py login  --gateway URL --provider URL --rd PATH --user NAME
      Logs in through the gateway like a browser (authorization code flow:
      /oauth2/login, the provider's dev login and consent forms,
      /oauth2/callback) and prints the session cookie's value.
  soak.py sample --pid PID --t0 EPOCH --windows N --window S --out FILE ...
      Every S seconds from T0 (the baseline at T0, then the end of each
      window): the gateway's RSS, open fds, threads, CPU time and TCP
      connections (from /proc), Redis INFO and a few gateway metrics, one
      JSON line each.
  soak.py report --lat-dir DIR --samples FILE --t0 EPOCH ...
      Merges the per-connection latency files written by bench/soak.lua
      with the samples into one row per window (CSV), draws the PNG
      (matplotlib), prints the figures and the verdict; exit status 1 when
      something is not flat (or requests failed).

login and sample use the standard library only; report needs matplotlib
for the PNG (soak.sh runs it from a virtual environment under .tools/).
"""

import argparse
import html.parser
import http.client
import json
import math
import os
import socket
import statistics
import sys
import time
import urllib.parse
import urllib.request

BUCKETS_PER_E = 40  # bench/soak.lua: bucket = floor(40 * ln(latency_us))


def log(msg):
    print(f"[soak] {msg}", flush=True)


# --------------------------------------------------------------------- login
class FormParser(html.parser.HTMLParser):
    """The first <form> of a page: its action and its inputs."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.inputs = []
        self.in_form = False
        self.done = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and not self.done:
            self.in_form = True
            self.action = a.get("action") or ""
        elif tag == "input" and self.in_form:
            self.inputs.append((a.get("name") or "", (a.get("type") or "text").lower(), a.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form" and self.in_form:
            self.in_form = False
            self.done = True


def http_exchange(method, url, jar, body=None):
    """One request, no redirect followed; records Set-Cookie in jar[netloc]."""
    u = urllib.parse.urlsplit(url)
    headers = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    cookies = jar.get(u.netloc, {})
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    if body is not None:
        body = urllib.parse.urlencode(body).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, (u.path or "/") + (f"?{u.query}" if u.query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    for line in resp.headers.get_all("Set-Cookie") or []:
        first, *attrs = line.split(";")
        name, _, value = first.partition("=")
        name, value = name.strip(), value.strip().strip('"')
        expired = any(
            a.strip().lower().startswith("max-age=") and a.strip()[8:].lstrip("-").isdigit()
            and int(a.strip()[8:]) <= 0 for a in attrs)
        if expired:
            jar.setdefault(u.netloc, {}).pop(name, None)
        elif name:
            jar.setdefault(u.netloc, {})[name] = value
    return resp.status, resp.headers, data


def cmd_login(a):
    jar = {}
    provider = urllib.parse.urlsplit(a.provider).netloc
    url = f"{a.gateway}/oauth2/login?rd={urllib.parse.quote(a.rd, safe='')}"
    form, seen_provider, trace, callback = None, False, [], None
    for _ in range(30):
        on_provider = urllib.parse.urlsplit(url).netloc == provider
        seen_provider |= on_provider
        method = "POST" if form is not None else "GET"
        status, headers, body = http_exchange(method, url, jar, form)
        trace.append(f"{method} {url} -> {status}")
        form = None
        if 300 <= status < 400:
            nxt = urllib.parse.urljoin(url, headers["Location"])
            if seen_provider and urllib.parse.urlsplit(nxt).netloc != provider:
                callback = nxt
                break
            url = nxt
            continue
        if status == 200 and on_provider:
            p = FormParser()
            p.feed(body)
            if p.action is not None:
                form = {n: v for n, t, v in p.inputs if t == "hidden" and n}
                if any(n == "login" for n, _, _ in p.inputs):
                    form["login"] = a.user
                    form["password"] = "any-password"  # the dev login form takes any
                url = urllib.parse.urljoin(url, p.action)
                continue
        sys.exit("login stopped at %s %s\n%s\n%s" % (status, url, "\n".join(trace), body[:2000]))
    if callback is None or not callback.startswith(f"{a.gateway}/oauth2/callback"):
        sys.exit("login did not come back to the gateway's callback:\n" + "\n".join(trace))
    status, headers, body = http_exchange("GET", callback, jar)
    if status != 302 or headers.get("Location") != a.rd:
        sys.exit(f"callback answered {status} (Location {headers.get('Location')}): {body[:500]}")
    cookie = jar.get(urllib.parse.urlsplit(a.gateway).netloc, {}).get(a.cookie_name)
    if not cookie:
        sys.exit(f"callback set no {a.cookie_name} cookie")
    print(cookie)


# -------------------------------------------------------------------- sample
TCP_STATES = {"01": "established", "08": "close_wait", "0A": "listen"}


def socket_inodes(pid):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_sockets(pid):
    """(local_port, remote_port, state) of each TCP socket the process holds."""
    inodes = socket_inodes(pid)
    out = []
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[9] in inodes:
                        out.append((int(p[1].rsplit(":", 1)[1], 16), int(p[2].rsplit(":", 1)[1], 16), p[3]))
        except OSError:
            pass
    return out


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    return fields


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


class Redis:
    """A minimal RESP client for INFO, on one kept connection."""

    def __init__(self, port):
        self.port, self.sock = port, None

    def info(self):
        try:
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                self.buf = b""
            self.sock.sendall(b"*1\r\n$4\r\nINFO\r\n")
            while b"\r\n" not in self.buf:
                self.buf += self._recv()
            head, self.buf = self.buf.split(b"\r\n", 1)
            if not head.startswith(b"$"):
                raise OSError(f"unexpected INFO answer {head[:80]!r}")
            n = int(head[1:])
            while len(self.buf) < n + 2:
                self.buf += self._recv()
            text, self.buf = self.buf[:n].decode(), self.buf[n + 2:]
        except (OSError, ValueError):
            if self.sock is not None:
                self.sock.close()
            self.sock = None
            return {}
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise OSError("redis closed the connection")
        return data


METRICS = {
    # name: (metric, label substring that must be present, label substring that must be absent)
    "auth_authenticated": ("gateway_auth_outcomes_total", 'result="authenticated"', None),
    "auth_refreshed": ("gateway_auth_outcomes_total", 'result="refreshed"', None),
    "auth_unauthenticated": ("gateway_auth_outcomes_total", 'result="unauthenticated"', None),
    "ratelimit_allowed": ("gateway_ratelimit_decisions_total", 'outcome="allowed"', None),
    "ratelimit_not_allowed": ("gateway_ratelimit_decisions_total", None, 'outcome="allowed"'),
    "ratelimit_store_errors": ("gateway_ratelimit_store_errors_total", None, None),
    "session_store_loads": ("gateway_session_cache_lookups_total", 'result="store_hit"', None),
}


def scrape(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {k: 0.0 for k in METRICS}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        for key, (metric, need, avoid) in METRICS.items():
            if not (line.startswith(metric + "{") or line.startswith(metric + " ")):
                continue
            if need and need not in line or avoid and avoid in line:
                continue
            try:
                out[key] += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return out


def cmd_sample(a):
    redis = Redis(a.redis_port)
    hz = os.sysconf("SC_CLK_TCK")
    last = None
    with open(a.out, "w") as out:
        for k in range(a.windows + 1):
            delay = a.t0 + k * a.window - time.time()
            if delay > 0:
                time.sleep(delay)
            t = time.time()
            try:
                st = proc_status(a.pid)
                fds = len(os.listdir(f"/proc/{a.pid}/fd"))
                ticks = cpu_ticks(a.pid)
                socks = tcp_sockets(a.pid)
            except OSError:
                log(f"sampler: gateway pid {a.pid} is gone at t={t - a.t0:.0f}s")
                sys.exit(1)
            conns = {"client": 0, "upstream": 0, "redis": 0, "provider": 0, "admin": 0,
                     "other": 0, "close_wait": 0}
            for lport, rport, state in socks:
                if state == "0A":
                    continue
                if state == "08":
                    conns["close_wait"] += 1
                if lport == a.gw_port:
                    conns["client"] += 1
                elif lport == a.admin_port:
                    conns["admin"] += 1
                elif rport == a.up_port:
                    conns["upstream"] += 1
                elif rport == a.redis_port:
                    conns["redis"] += 1
                elif rport == a.oidc_port:
                    conns["provider"] += 1
                else:
                    conns["other"] += 1
            info = redis.info()
            row = {
                "k": k, "t": round(t - a.t0, 3),
                "rss_kb": int(st["VmRSS"][0]), "hwm_kb": int(st["VmHWM"][0]),
                "threads": int(st["Threads"][0]), "fds": fds, "cpu_ticks": ticks, "hz": hz,
                "conns": conns,
                "redis_connected_clients": int(info.get("connected_clients", -1)),
                "redis_used_memory": int(info.get("used_memory", -1)),
                "metrics": scrape(a.metrics_url),
            }
            out.write(json.dumps(row) + "\n")
            out.flush()
            if k and a.progress and (k * a.window) % a.progress == 0:
                cpu = 100 * (ticks - last) / hz / a.progress if last is not None else float("nan")
                log(f"t={k * a.window:>4}s rss={row['rss_kb'] / 1024:.1f} MB fds={fds} "
                    f"conns client/upstream/redis={conns['client']}/{conns['upstream']}/{conns['redis']} "
                    f"close_wait={conns['close_wait']} redis clients={row['redis_connected_clients']} "
                    f"gateway cpu={cpu:.0f}%")
            if not k or (a.progress and (k * a.window) % a.progress == 0):
                last = ticks


# -------------------------------------------------------------------- report
def read_latency(lat_dir, windows):
    per = [{"ok": 0, "non_2xx": 0, "lost": 0, "max_lag_ms": 0.0, "hist": {}} for _ in range(windows)]
    files = [f for f in os.listdir(lat_dir) if f.startswith("lat-") and f.endswith(".txt")]
    for name in files:
        with open(os.path.join(lat_dir, name)) as f:
            for line in f:
                p = line.split()
                if len(p) < 5:
                    continue
                w = int(p[0])
                if not 0 <= w < windows:
                    continue
                d = per[w]
                d["ok"] += int(p[1])
                d["non_2xx"] += int(p[2])
                d["lost"] += int(p[3])
                d["max_lag_ms"] = max(d["max_lag_ms"], float(p[4]))
                for item in p[5:]:
                    b, n = item.split(":")
                    d["hist"][int(b)] = d["hist"].get(int(b), 0) + int(n)
    return per, len(files)


def percentile_ms(hist, q):
    total = sum(hist.values())
    if not total:
        return float("nan")
    need, cum = q * total, 0
    for b in sorted(hist):
        cum += hist[b]
        if cum >= need:
            return math.exp((b + 0.5) / BUCKETS_PER_E) / 1000
    return float("nan")


def comparison_spans(windows, window):
    """(early, late) window index ranges: the second minute and the last
    minute; a run under 180 s compares its middle third with its last third."""
    secs = windows * window
    if secs >= 180:
        e0, e1, l0 = 60, 120, secs - 60
    else:
        e0, e1, l0 = secs // 3, 2 * secs // 3, 2 * secs // 3
    return (range(int(e0 // window), int(e1 // window)), range(int(l0 // window), windows))


CHECKS = [
    # column, label, unit, absolute tolerance
    ("rss_mb", "RSS", "MB", 2.0),
    ("fds", "open fds", "", 2),
    ("conns_client", "client connections", "", 2),
    ("conns_upstream", "upstream connections", "", 2),
    ("conns_redis", "gateway->Redis connections", "", 2),
    ("conns_close_wait", "sockets in CLOSE_WAIT", "", 2),
    ("redis_connected_clients", "Redis connected_clients", "", 2),
    ("p99_ms", "p99 latency", "ms", 1.0),
]


def cmd_report(a):
    windows, window = a.windows, a.window
    lat, nfiles = read_latency(a.lat_dir, windows)
    samples = {}
    with open(a.samples) as f:
        for line in f:
            s = json.loads(line)
            samples[s["k"]] = s
    if 0 not in samples or any(k not in samples for k in range(1, windows + 1)):
        missing = [k for k in range(windows + 1) if k not in samples]
        sys.exit(f"samples missing for windows {missing[:10]}")

    rows = []
    for w in range(windows):
        d, s, prev = lat[w], samples[w + 1], samples[w]
        n = d["ok"] + d["non_2xx"]
        c = s["conns"]
        m, pm = s["metrics"], prev["metrics"]
        delta = lambda key: int(round(m.get(key, 0) - pm.get(key, 0))) if m and pm else ""
        rows.append({
            "window": w,
            "t_end_s": (w + 1) * window,
            "target_rps": round(a.rate, 1),
            "rps": round(n / window, 1),
            "p50_ms": round(percentile_ms(d["hist"], 0.50), 3),
            "p99_ms": round(percentile_ms(d["hist"], 0.99), 3),
            "max_ms": round(math.exp((max(d["hist"]) + 1) / BUCKETS_PER_E) / 1000, 3) if d["hist"] else "",
            "non_2xx": d["non_2xx"],
            "lost": d["lost"],
            "errors": d["non_2xx"] + d["lost"],
            "max_send_lag_ms": round(d["max_lag_ms"], 1),
            "rss_mb": round(s["rss_kb"] / 1024, 2),
            "fds": s["fds"],
            "threads": s["threads"],
            "conns_client": c["client"],
            "conns_upstream": c["upstream"],
            "conns_redis": c["redis"],
            "conns_close_wait": c["close_wait"],
            "redis_connected_clients": s["redis_connected_clients"],
            "redis_used_memory_mb": round(s["redis_used_memory"] / 2**20, 2),
            "gateway_cpu_pct": round(100 * (s["cpu_ticks"] - prev["cpu_ticks"]) / s["hz"] / window, 1),
            "session_refreshes": delta("auth_refreshed"),
            "session_store_loads": delta("session_store_loads"),
            "ratelimit_not_allowed": delta("ratelimit_not_allowed"),
            "ratelimit_store_errors": delta("ratelimit_store_errors"),
        })

    cols = list(rows[0])
    with open(a.csv, "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join(str(r[c]) for c in cols) + "\n")

    early, late = comparison_spans(windows, window)
    span = lambda r: f"{r.start * window}-{r.stop * window} s"
    med = lambda col, rng: statistics.median(rows[i][col] for i in rng if rows[i][col] == rows[i][col])
    verdict = []
    for col, label, unit, tol in CHECKS:
        if col == "p99_ms":
            tol = a.p99_tolerance_ms
        e, l = med(col, early), med(col, late)
        allowed = max(a.tolerance_pct / 100 * abs(e), tol)
        diff = l - e
        state = "flat" if abs(diff) <= allowed else ("RISING" if diff > 0 else "FALLING")
        verdict.append(dict(column=col, label=label, unit=unit, early=e, late=l, change=diff,
                            allowed=allowed, state=state))

    requests = sum(r["rps"] * window for r in rows)
    non2xx = sum(r["non_2xx"] for r in rows)
    lost = sum(r["lost"] for r in rows)
    errors = non2xx + lost
    steady = [rows[i]["rps"] for i in range(len(rows)) if i >= min(2, len(rows) - 1)]
    achieved = statistics.median(steady)
    total_h = {}
    for d in lat:
        for b, n in d["hist"].items():
            total_h[b] = total_h.get(b, 0) + n

    print()
    log(f"capacity {a.capacity:.0f} req/s (wrk, {a.capacity_note}); soak rate {a.rate:.0f} req/s "
        f"({100 * a.rate / a.capacity:.0f} %), {windows * window} s, {a.connections} connections "
        f"({nfiles} latency files)")
    log(f"requests {int(requests)} (median {achieved:.0f} req/s per window), errors {errors} "
        f"(non-2xx {non2xx}, lost {lost}); whole-run p50 {percentile_ms(total_h, 0.5):.3f} ms, "
        f"p99 {percentile_ms(total_h, 0.99):.3f} ms, p99.9 {percentile_ms(total_h, 0.999):.3f} ms")
    first, lastrow = rows[0], rows[-1]
    log(f"RSS {samples[0]['rss_kb'] / 1024:.1f} MB before load, {first['rss_mb']:.1f} MB after the first "
        f"window, {lastrow['rss_mb']:.1f} MB at the end (peak {max(s['hwm_kb'] for s in samples.values()) / 1024:.1f} MB); "
        f"fds {first['fds']} -> {lastrow['fds']}; gateway CPU median "
        f"{statistics.median(r['gateway_cpu_pct'] for r in rows):.0f} %")
    log(f"session refreshes {sum(r['session_refreshes'] or 0 for r in rows)}, session loads from Redis "
        f"{sum(r['session_store_loads'] or 0 for r in rows)}, rate-limit decisions not 'allowed' "
        f"{sum(r['ratelimit_not_allowed'] or 0 for r in rows)}, Redis store errors "
        f"{sum(r['ratelimit_store_errors'] or 0 for r in rows)}")
    if a.log_lines is not None:
        log(f"access log: {a.log_lines} request lines for the gateway's whole life "
            f"({a.log_non200} not 200, login and checks included)")
    log(f"verdict: median of {span(early)} vs median of {span(late)}; flat = within "
        f"{a.tolerance_pct:g} % or the absolute tolerance")
    for v in verdict:
        log(f"  {v['label']:<28} {v['early']:>9.2f} -> {v['late']:>9.2f} {v['unit']:<2} "
            f"(change {v['change']:+.2f}, allowed ±{v['allowed']:.2f})  {v['state']}")
    failures = [v["label"] for v in verdict if v["state"] == "RISING"]
    if errors > a.max_errors:
        failures.append(f"{errors} failed requests")
    warnings = []
    if achieved < 0.95 * a.rate:
        warnings.append(f"the load generator reached only {achieved:.0f} of {a.rate:.0f} req/s "
                        "(median per window): the load side, not the gateway, fell short")
    for w_ in warnings:
        log(f"WARNING: {w_}")
    ok = not failures
    log("RESULT " + ("PASS: everything flat, no failed requests" if ok else "FAIL: " + "; ".join(failures)))

    summary = dict(
        ok=ok, failures=failures, warnings=warnings, seconds=windows * window, window_s=window,
        capacity_rps=round(a.capacity, 1), rate_rps=round(a.rate, 1), connections=a.connections,
        requests=int(requests), errors=errors, non_2xx=non2xx, lost=lost,
        median_rps=achieved, early_span_s=[early.start * window, early.stop * window],
        late_span_s=[late.start * window, late.stop * window], verdict=verdict,
        rss_mb_before=round(samples[0]["rss_kb"] / 1024, 2), meta=a.meta,
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    if a.png:
        plot(rows, a, early, late, ok)
    sys.exit(0 if ok else 1)


def plot(rows, a, early, late, ok):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_end_s"] / 60 for r in rows]
    fig, ax = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
    for axis in ax:
        for rng, color in ((early, "tab:green"), (late, "tab:orange")):
            axis.axvspan(rng.start * a.window / 60, rng.stop * a.window / 60, color=color, alpha=0.08)
        axis.grid(alpha=0.3)

    ax[0].plot(t, [r["rps"] for r in rows], label="completed req/s")
    ax[0].axhline(a.rate, color="gray", ls="--", label=f"target {a.rate:.0f} req/s")
    ax[0].set_ylabel("req/s")
    ax[0].set_ylim(bottom=0)
    e2 = ax[0].twinx()
    e2.bar(t, [r["errors"] for r in rows], width=a.window / 60 * 0.8, color="tab:red", alpha=0.6,
           label="errors / window")
    e2.set_ylabel("errors per window")
    e2.set_ylim(bottom=0, top=max(1, max(r["errors"] for r in rows)) * 1.2)
    h1, l1 = ax[0].get_legend_handles_labels()
    h2, l2 = e2.get_legend_handles_labels()
    ax[0].legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)

    ax[1].plot(t, [r["p50_ms"] for r in rows], label="p50")
    ax[1].plot(t, [r["p99_ms"] for r in rows], label="p99")
    ax[1].set_ylabel("latency per window (ms, log)")
    ax[1].set_yscale("log")
    ax[1].legend(loc="upper right", fontsize=8)

    ax[2].plot(t, [r["rss_mb"] for r in rows], color="tab:purple", label="RSS (MB)")
    ax[2].set_ylabel("gateway RSS (MB)")
    ax[2].set_ylim(bottom=0, top=max(r["rss_mb"] for r in rows) * 1.3)
    f2 = ax[2].twinx()
    f2.plot(t, [r["fds"] for r in rows], color="tab:brown", label="open fds")
    f2.set_ylabel("open fds")
    f2.set_ylim(bottom=0, top=max(r["fds"] for r in rows) * 1.3)
    h1, l1 = ax[2].get_legend_handles_labels()
    h2, l2 = f2.get_legend_handles_labels()
    ax[2].legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)

    for col, label in (("conns_client", "client"), ("conns_upstream", "to upstream"),
                       ("conns_redis", "to Redis (gateway side)"),
                       ("redis_connected_clients", "Redis connected_clients"),
                       ("conns_close_wait", "CLOSE_WAIT")):
        ax[3].plot(t, [r[col] for r in rows], label=label)
    ax[3].set_ylabel("TCP connections")
    ax[3].set_ylim(bottom=0)
    ax[3].set_xlabel("minutes since the load started (shaded: the two spans the verdict compares)")
    ax[3].legend(loc="center right", fontsize=8)

    fig.suptitle(f"gateway soak: {len(rows) * a.window} s at {a.rate:.0f} req/s "
                 f"({100 * a.rate / a.capacity:.0f} % of {a.capacity:.0f} measured), session auth + "
                 f"cluster rate limit + access log: {'PASS' if ok else 'FAIL'}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(a.png, dpi=90)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("login")
    s.add_argument("--gateway", required=True)
    s.add_argument("--provider", required=True)
    s.add_argument("--rd", required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--cookie-name", default="gateway_session")

    s = sub.add_parser("sample")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--t0", type=float, required=True)
    s.add_argument("--windows", type=int, required=True)
    s.add_argument("--window", type=int, required=True)
    s.add_argument("--out", required=True)
    for port in ("gw", "admin", "up", "redis", "oidc"):
        s.add_argument(f"--{port}-port", type=int, required=True)
    s.add_argument("--metrics-url", required=True)
    s.add_argument("--progress", type=int, default=60, help="print a line every N seconds (0: never)")

    s = sub.add_parser("report")
    s.add_argument("--lat-dir", required=True)
    s.add_argument("--samples", required=True)
    s.add_argument("--windows", type=int, required=True)
    s.add_argument("--window", type=int, required=True)
    s.add_argument("--rate", type=float, required=True)
    s.add_argument("--capacity", type=float, required=True)
    s.add_argument("--capacity-note", default="")
    s.add_argument("--connections", type=int, required=True)
    s.add_argument("--tolerance-pct", type=float, default=10)
    s.add_argument("--p99-tolerance-ms", type=float, default=1.0)
    s.add_argument("--max-errors", type=int, default=0)
    s.add_argument("--log-lines", type=int)
    s.add_argument("--log-non200", type=int)
    s.add_argument("--csv", required=True)
    s.add_argument("--png")
    s.add_argument("--json")
    s.add_argument("--meta", type=json.loads, default={})

    a = p.parse_args()
    {"login": cmd_login, "sample": cmd_sample, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
