#!/usr/bin/env python3
"""Report of bench/matrix.sh (see bench/README.md, "Matrix").

  matrix.py report --rows TSV --results TSV --rss TSV --meta JSON
                   --json OUT --md OUT [--png OUT]
      Medians per row and proxy over the rounds, gateway/NGINX ratios, the
      workers scaling factor; prints the Markdown report and writes it, the
      JSON and the bar chart (PNG, matplotlib: matrix.sh runs this from the
      project-local virtual environment under .tools/).

Inputs, tab-separated, written by matrix.sh:
  rows:    row group scenario label path method connections wrk_threads
           workers pinning                          (one line per row, in order)
  results: row round proxy rps p50_ms p99_ms requests socket_errors non_2xx
           cpu_pct req_per_cpu_s log_lines          (one line per measured run)
  rss:     row proxy peak_rss_kb
"""

import argparse
import json
import statistics
import sys

PROXIES = ("gateway", "nginx")


def read_tsv(path):
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def load(args):
    rows = []
    for r in read_tsv(args.rows):
        name, group, scenario, label, path, method, conns, threads, workers, pinning = r
        rows.append(dict(row=name, group=group, scenario=scenario, label=label, path=path,
                         method=method, connections=int(conns), wrk_threads=int(threads),
                         workers=int(workers), pinning=pinning))
    runs = []
    for r in read_tsv(args.results):
        name, rnd, proxy, rps, p50, p99, reqs, sock, non2xx, cpu, rpc, lines = r
        runs.append(dict(row=name, round=int(rnd), proxy=proxy, rps=float(rps), p50_ms=float(p50),
                         p99_ms=float(p99), requests=int(reqs), socket_errors=int(sock),
                         non_2xx=int(non2xx), cpu_pct=float(cpu), req_per_cpu_s=float(rpc),
                         log_lines=int(lines)))
    rss = {(r[0], r[1]): int(r[2]) for r in read_tsv(args.rss)}
    with open(args.meta) as f:
        meta = json.load(f)
    return rows, runs, rss, meta


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def summarize(rows, runs, rss):
    for row in rows:
        mine = [r for r in runs if r["row"] == row["row"]]
        row["rounds"] = mine
        summary = {}
        for proxy in PROXIES:
            pr = [r for r in mine if r["proxy"] == proxy]
            if not pr:
                continue
            med = lambda k: statistics.median(r[k] for r in pr)  # noqa: E731
            kb = rss.get((row["row"], proxy))
            summary[proxy] = dict(
                rps_median=round(med("rps"), 2), p50_ms_median=round(med("p50_ms"), 3),
                p99_ms_median=round(med("p99_ms"), 3), cpu_pct_median=med("cpu_pct"),
                req_per_cpu_s_median=med("req_per_cpu_s"),
                socket_errors=sum(r["socket_errors"] for r in pr),
                non_2xx=sum(r["non_2xx"] for r in pr),
                requests=sum(r["requests"] for r in pr),
                peak_rss_kb=kb)
        row["summary"] = summary
        g, n = summary.get("gateway"), summary.get("nginx")
        row["ratio"] = None
        if g and n:
            by_round = {}
            for r in mine:
                by_round.setdefault(r["round"], {})[r["proxy"]] = r["rps"]
            paired = [v["gateway"] / v["nginx"] for v in by_round.values()
                      if v.get("nginx") and "gateway" in v]
            row["ratio"] = dict(
                rps=ratio(g["rps_median"], n["rps_median"]),
                p99=ratio(g["p99_ms_median"], n["p99_ms_median"]),
                req_per_cpu_s=ratio(g["req_per_cpu_s_median"], n["req_per_cpu_s_median"]),
                rps_paired_median=round(statistics.median(paired), 3) if paired else None)
    scaling = None
    by_name = {r["row"]: r for r in rows}
    w1, w2 = by_name.get("workers-1"), by_name.get("workers-2")
    if w1 and w2:
        scaling = {}
        for proxy in PROXIES:
            a, b = w1["summary"].get(proxy), w2["summary"].get(proxy)
            if a and b:
                scaling[proxy] = dict(rps=ratio(b["rps_median"], a["rps_median"]),
                                      req_per_cpu_s=ratio(b["req_per_cpu_s_median"],
                                                          a["req_per_cpu_s_median"]))
    return scaling


def fmt_int(v):
    return f"{v:,.0f}"


def fmt_ms(v):
    return f"{v:.2f} ms" if v < 100 else f"{v:,.0f} ms"


def fmt_mib(kb):
    return f"{kb / 1024:.1f}" if kb else "-"


RSS_TARGET_MIB = 64
SIZE_RATIO_TARGET = 0.9
SCALING_TARGET = 1.8


def check_targets(rows, scaling, meta):
    """The issue's targets that the matrix measures, one line each."""
    met = lambda ok: "met" if ok else "**NOT met**"  # noqa: E731
    lines = []
    for r in rows:
        g, n = r["summary"].get("gateway"), r["summary"].get("nginx")
        if not (g and n and r["ratio"]):
            continue
        if r["scenario"] in ("sizes", "uploads"):
            v = r["ratio"]["rps"]
            lines.append(f"{r['label']}: within 10 % of NGINX (ratio >= {SIZE_RATIO_TARGET}): "
                         f"{v:.3f}, {met(v >= SIZE_RATIO_TARGET)}")
        elif r["scenario"] == "conns":
            errs = g["socket_errors"] + g["non_2xx"]
            mib = (g["peak_rss_kb"] or 0) / 1024
            lines.append(f"{r['label']}: no errors and gateway RSS <= {RSS_TARGET_MIB} MiB: "
                         f"{errs} errors, {mib:.1f} MiB, {met(errs == 0 and 0 < mib <= RSS_TARGET_MIB)}")
    if scaling and scaling.get("gateway") and scaling["gateway"]["rps"] is not None:
        v = scaling["gateway"]["rps"]
        tail = " (not meaningful on this machine, see the warning)" if meta.get("workers_note") else ""
        lines.append(f"gateway with 2 workers >= {SCALING_TARGET}x 1 worker: x{v:.2f}, "
                     f"{met(v >= SCALING_TARGET)}{tail}")
    return lines


def markdown(rows, scaling, meta):
    out = []
    out.append("## Gateway vs NGINX: scenario matrix")
    out.append("")
    out.append(f"- machine: {meta['nproc']} CPUs, {meta['cpu_model'] or 'unknown CPU'}, "
               f"Linux {meta['kernel']}")
    out.append(f"- date: {meta['date']}; git {meta['git_rev']}; {meta['nginx']}; wrk {meta['wrk']}")
    out.append(f"- command: `{meta['command']}`")
    out.append(f"- method: each row alternates gateway and NGINX for {meta['rounds']} rounds of "
               f"{meta['duration']} (after a {meta['warmup']} warm-up each); medians. Both proxies "
               "do the same work (JSON access log, X-Forwarded-*, X-Request-Id) in front of "
               "demo_upstream; NGINX "
               f"{meta['nginx_buffering']}.")
    pinnings = []
    for r in rows:
        if r["pinning"] not in pinnings:
            pinnings.append(r["pinning"])
    for p in pinnings:
        which = ", ".join(r["label"] for r in rows if r["pinning"] == p)
        out.append(f"- pinning ({which}): {p}")
    out.append("")
    out.append("| scenario | gateway req/s | NGINX req/s | ratio | gateway p99 | NGINX p99 "
               "| req per CPU-second, gateway / NGINX (ratio) | errors, gateway / NGINX "
               "| peak RSS MiB, gateway / NGINX |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        g, n = r["summary"].get("gateway"), r["summary"].get("nginx")
        if not (g and n):
            out.append(f"| {r['label']} | (no data) | | | | | | | |")
            continue
        label = f"{r['label']}, {r['method']} {r['path'].removeprefix('/demo')}, -c{r['connections']}"
        errs = lambda s: s["socket_errors"] + s["non_2xx"]  # noqa: E731
        out.append(
            f"| {label} | {fmt_int(g['rps_median'])} | {fmt_int(n['rps_median'])} "
            f"| {r['ratio']['rps']:.3f} | {fmt_ms(g['p99_ms_median'])} | {fmt_ms(n['p99_ms_median'])} "
            f"| {fmt_int(g['req_per_cpu_s_median'])} / {fmt_int(n['req_per_cpu_s_median'])} "
            f"({r['ratio']['req_per_cpu_s']:.3f}) "
            f"| {errs(g)} / {errs(n)} "
            f"| {fmt_mib(g['peak_rss_kb'])} / {fmt_mib(n['peak_rss_kb'])} |")
    out.append("")
    out.append("ratio = gateway / NGINX median req/s (>= 1: the gateway is faster). Errors = wrk "
               "socket errors + non-2xx answers, summed over the measured rounds. Peak RSS = "
               "VmHWM of the proxy's processes (NGINX: master + workers), from their start "
               "(fresh for each scenario) to the end of its rounds.")
    if scaling:
        out.append("")
        parts = [f"{'NGINX' if p == 'nginx' else p} x{s['rps']:.2f}" for p, s in scaling.items()
                 if s["rps"] is not None]
        out.append(f"Workers scaling factor (2-worker / 1-worker median req/s): {', '.join(parts)}.")
        if meta.get("workers_note"):
            out.append("")
            out.append(f"**Warning:** {meta['workers_note']}")
    targets = check_targets(rows, scaling, meta)
    if targets:
        out.append("")
        out.append("Targets (docs/PERFORMANCE.md):")
        out.append("")
        out.extend(f"- {t}" for t in targets)
    notes = []
    for r in rows:
        for proxy, s in r["summary"].items():
            if s["cpu_pct_median"] < 90 * r["workers"]:
                notes.append(f"{r['label']} ({proxy}: {s['cpu_pct_median']:.0f}% CPU)")
    if notes:
        out.append("")
        out.append("Proxy not CPU-bound (under 90% of its workers' CPUs; the load side, the "
                   "network copy or errors set req/s, so req per CPU-second is the fairer "
                   "comparison): " + "; ".join(notes) + ".")
    short_logs = [f"{r['label']} round {x['round']} {x['proxy']}" for r in rows for x in r["rounds"]
                  if x["log_lines"] < x["requests"]]
    if short_logs:
        out.append("")
        out.append("WARNING: fewer access-log lines than requests (not the same logging work): "
                   + "; ".join(short_logs) + ".")
    return "\n".join(out) + "\n"


def plot(rows, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [r for r in rows if r["ratio"]]
    labels = [r["label"] for r in data]
    rps = [r["ratio"]["rps"] for r in data]
    rpc = [r["ratio"]["req_per_cpu_s"] for r in data]
    x = range(len(data))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(data) + 2), 4.6))
    b1 = ax.bar([i - width / 2 for i in x], rps, width, label="req/s", color="#3b75af")
    b2 = ax.bar([i + width / 2 for i in x], rpc, width, label="req per CPU-second", color="#a6c8e6")
    for bars in (b1, b2):
        for bar in bars:
            ax.annotate(f"{bar.get_height():.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.axhline(1.0, color="black", linewidth=1, label="1.0 (parity)")
    ax.axhline(0.9, color="#c0392b", linewidth=1, linestyle="--", label="0.9")
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel("gateway / NGINX")
    top = max([1.1] + [v for v in rps + rpc if v is not None])
    ax.set_ylim(0, top * 1.3)
    ax.set_title(f"Gateway vs NGINX, {meta['nproc']} CPUs {meta['cpu_model']}, {meta['date'][:10]}\n"
                 f"medians of {meta['rounds']} x {meta['duration']} rounds", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args):
    rows, runs, rss, meta = load(args)
    scaling = summarize(rows, runs, rss)
    md = markdown(rows, scaling, meta)
    sys.stdout.write("\n" + md)
    with open(args.md, "w") as f:
        f.write(md)
    doc = dict(benchmark="matrix", meta=meta, scaling_2_over_1_workers=scaling,
               ok=all(s["socket_errors"] + s["non_2xx"] == 0
                      for r in rows if r["scenario"] != "conns" for s in r["summary"].values()),
               rows=rows)
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    if args.png:
        plot(rows, meta, args.png)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("report")
    for a in ("rows", "results", "rss", "meta", "json", "md"):
        rp.add_argument(f"--{a}", required=True)
    rp.add_argument("--png")
    args = ap.parse_args()
    if args.cmd == "report":
        report(args)


if __name__ == "__main__":
    main()
