#!/usr/bin/env bash
# Checks the monitoring assets without starting any daemon:
#   - prometheus/alerts.yaml       promtool check rules (syntax, templates)
#   - prometheus/alerts_test.yaml  promtool test rules (every alert fires and stays quiet when it should)
#   - prometheus/prometheus.yml    promtool check config (and the rule files it loads)
#   - grafana/                     dashboards are valid JSON models: unique uids and panel ids,
#                                  every target has a PromQL expr that promtool can parse, every
#                                  datasource is the ${datasource} variable, every $variable used is
#                                  defined, every metric selector is filtered by the namespace, node
#                                  and pod variables (and by route where the series carry a route
#                                  label); provisioning points where the dashboards are mounted
#   - runbook links                each alert's runbook_url is docs/RUNBOOK.md#<lowercased name>
#                                  (relative to the repository root; when docs/RUNBOOK.md exists, a
#                                  heading of that name is there)
#   - job selector                 every job matcher of the alerts is one exact job="..." (a regex such
#                                  as job=~".*gateway.*" also matches istio-ingressgateway)
#   - namespaces                   every aggregation of the alerts keeps the namespace label
#                                  (sum by (job, namespace, ...)): same-named gateways in two
#                                  namespaces are never summed together
# That every metric these reference is really exported is tests/monitoring.rs.
# Run from the repository root (make test does). Without promtool on PATH it
# extracts promtool from Debian's `prometheus` package into the project-local
# .tools/bin (GATEWAY_TOOLS_DIR elsewhere); nothing goes into the system.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*"; }

# promtool: the one on PATH, else the project-local copy in .tools/bin,
# else extracted there from Debian's prometheus package (apt-get download +
# dpkg-deb -x: nothing is installed into the system, no service is started).
TOOLS=${GATEWAY_TOOLS_DIR:-$PWD/.tools}
PROMTOOL=$(command -v promtool || true)
fetch_promtool() {
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || {
        echo "promtool not found and no apt-get/dpkg-deb to fetch it: put promtool (from a Prometheus release) on PATH" >&2
        exit 1
    }
    local dl
    dl=$(mktemp -d)
    log "promtool not found: extracting it from Debian's prometheus package into $TOOLS/bin (nothing is installed into the system)"
    if ! (cd "$dl" && apt-get download prometheus >/dev/null 2>&1); then
        if [ "$(id -u)" -eq 0 ]; then
            log "refreshing apt's package lists (apt-get update) to find it"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            (cd "$dl" && apt-get download prometheus >/dev/null)
        else
            echo "apt-get download prometheus failed: run 'sudo apt-get update' once, or put promtool on PATH" >&2
            exit 1
        fi
    fi
    dpkg-deb -x "$dl"/prometheus_*.deb "$dl/root"
    mkdir -p "$TOOLS/bin"
    cp "$dl/root/usr/bin/promtool" "$TOOLS/bin/promtool.tmp"
    mv "$TOOLS/bin/promtool.tmp" "$TOOLS/bin/promtool"
    rm -rf "$dl"
}
if [ -z "$PROMTOOL" ]; then
    [ -x "$TOOLS/bin/promtool" ] || fetch_promtool
    PROMTOOL=$TOOLS/bin/promtool
fi
promtool() { "$PROMTOOL" "$@"; }

command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
log "$(promtool --version 2>&1 | head -n1)"

log "promtool check rules prometheus/alerts.yaml"
promtool check rules prometheus/alerts.yaml

log "promtool test rules prometheus/alerts_test.yaml"
promtool test rules prometheus/alerts_test.yaml

log "promtool check config prometheus/prometheus.yml"
# rule_files are resolved next to prometheus.yml, as in the container.
(cd prometheus && promtool check config prometheus.yml)

log "runbook links"
python3 - <<'PY'
import os, re, sys

text = open("prometheus/alerts.yaml", encoding="utf-8").read()
# Relative to the repository root: no host is assumed (prefix it where
# alerts are routed, e.g. in an Alertmanager template).
base = "docs/RUNBOOK.md#"
errors = []
blocks = re.split(r"^\s*- alert:\s*", text, flags=re.M)[1:]
names = []
for block in blocks:
    name = block.split()[0]
    names.append(name)
    m = re.search(r"runbook_url:\s*(\S+)", block)
    if not m:
        errors.append(f"{name}: no runbook_url")
    elif m.group(1) != base + name.lower():
        errors.append(f"{name}: runbook_url {m.group(1)} is not {base + name.lower()}")
    for key in ("severity:", "summary:", "description:"):
        if key not in block:
            errors.append(f"{name}: no {key[:-1]}")
if len(set(names)) != len(names):
    errors.append(f"duplicate alert names: {names}")
# One exact job selector everywhere (the parameter documented in alerts.yaml).
rules_only = re.sub(r"^\s*#.*$", "", text, flags=re.M)  # not the comments
jobs = re.findall(r"\bjob\s*(=~|!~|!=|=)\s*\"([^\"]*)\"", rules_only)
if any(op != "=" for op, _ in jobs):
    errors.append(f"job matchers must be exact (job=\"...\"), found {sorted({op + v for op, v in jobs if op != '='})}")
if len({v for _, v in jobs}) > 1:
    errors.append(f"alerts select different jobs: {sorted({v for _, v in jobs})}")
for name, block in zip(names, blocks):
    m = re.search(r"expr:(.*?)\n\s*(?:for|labels):", block, flags=re.S)
    if m and "job=" not in m.group(1):
        errors.append(f"{name}: expr does not select the job (job=\"...\")")
    # Every aggregation keeps the namespace: two installations sharing
    # job="gateway" in two namespaces are judged separately, not summed.
    expr = m.group(1) if m else ""
    for op in re.finditer(r"\b(sum|avg|min|max|count|group|stddev|stdvar|topk|bottomk|quantile|count_values)\s*(by|without)?\s*\(([^)]*)\)?", expr):
        agg, mod, grouping = op.group(1), op.group(2), op.group(3) or ""
        if mod == "without":
            bad = "namespace" in [g.strip() for g in grouping.split(",")]
        else:
            bad = mod != "by" or "namespace" not in [g.strip() for g in grouping.split(",")]
        if bad:
            errors.append(f"{name}: aggregation '{op.group(0).strip()}' drops the namespace label (use {agg} by (job, namespace, ...))")
groups = re.findall(r"^\s*- name:\s*(\S+)", text, flags=re.M)
if groups != ["gateway"]:
    errors.append(f"expected exactly one group named gateway, found {groups}")
tests = open("prometheus/alerts_test.yaml", encoding="utf-8").read()
for name in names:
    if not re.search(rf"alertname:\s*{name}\s*$", tests, flags=re.M):
        errors.append(f"{name}: no unit test in prometheus/alerts_test.yaml")
runbook = "docs/RUNBOOK.md"
if os.path.exists(runbook):
    headings = set(re.findall(r"^#+\s+(\S+)\s*$", open(runbook, encoding="utf-8").read(), flags=re.M))
    for name in names:
        if name not in headings:
            errors.append(f"{name}: no heading '{name}' in {runbook} (the runbook_url anchor would not resolve)")
else:
    print(f"  note: {runbook} does not exist yet; anchors not checked against it")
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"  {len(names)} alerts, runbook anchors ok, job selector {sorted({v for _, v in jobs})}, aggregations keep namespace")
PY

log "grafana dashboards and provisioning"
exprs_file="$(mktemp)"
trap 'rm -f "$exprs_file"' EXIT
python3 - "$exprs_file" <<'PY'
import glob, json, re, sys

errors = []
def err(msg):
    errors.append(msg)

# Provisioning: the data source uid the dashboards default to, and the path
# the dashboard provider reads.
ds = open("grafana/provisioning/datasources/prometheus.yaml", encoding="utf-8").read()
for needle in ("uid: prometheus", "type: prometheus", "url: http://prometheus:9090"):
    if needle not in ds:
        err(f"datasources/prometheus.yaml: missing '{needle}'")
prov = open("grafana/provisioning/dashboards/gateway.yaml", encoding="utf-8").read()
for needle in ("type: file", "path: /var/lib/grafana/dashboards"):
    if needle not in prov:
        err(f"dashboards/gateway.yaml: missing '{needle}'")

DS_REF = {"type": "prometheus", "uid": "${datasource}"}
# Every metric selector of a panel carries these filters (node: relabelled
# from the pod's node by k8s/base/servicemonitor.yaml; namespace and pod:
# added by the Prometheus Operator; all empty, so matched by the variables'
# ".*", under docker compose).
FILTERS = ('namespace=~"$namespace"', 'node=~"$node"', 'pod=~"$pod"')
# Series with a route label: their selectors also filter by route, unless
# the panel mixes them with series that have none (the two would then not
# cover the same requests, e.g. total minus upstream time) or the selector
# pins one route (route="...").
ROUTE_METRICS = ("gateway_requests_total", "gateway_request_duration_seconds_", "gateway_auth_outcomes_total",
                 "gateway_route_ip_denied_total")
METRIC = r"\b((?:gateway|process)_[a-z_]+)\b(\{[^}]*\})?"
def all_routed(exprs_):
    found = [m for e in exprs_ for m, _ in re.findall(METRIC, e)]
    return bool(found) and all(m.startswith(ROUTE_METRICS) for m in found)
def check_filters(src, expr, routed):
    for metric, sel in re.findall(METRIC, expr):
        missing = [f for f in FILTERS if f not in sel]
        if routed and 'route=~"$route"' not in sel and 'route="' not in sel:
            missing.append('route=~"$route"')
        if missing:
            err(f"{src}: {metric}{sel} lacks {', '.join(missing)}")
BUILTIN = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s", "__range_ms"}
exprs = []
uids = set()
files = sorted(glob.glob("grafana/dashboards/*.json"))
if not files:
    err("no dashboards in grafana/dashboards")
for path in files:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        err(f"{path}: not valid JSON: {e}")
        continue
    where = path
    for key in ("uid", "title", "panels", "schemaVersion", "templating"):
        if key not in d:
            err(f"{where}: no '{key}'")
    uid = d.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid or ""):
        err(f"{where}: uid {uid!r} must be 1-40 letters, digits, '-' or '_'")
    elif uid in uids:
        err(f"{where}: uid {uid} used twice")
    uids.add(uid)
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        err(f"{where}: schemaVersion {d.get('schemaVersion')!r} too old")

    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    for name in ("namespace", "node", "pod", "route"):
        if variables.get(name, {}).get("type") != "query":
            err(f"{where}: needs a '{name}' query variable (every panel filters by it)")
    dsvar = variables.get("datasource")
    if not dsvar or dsvar.get("type") != "datasource" or dsvar.get("query") != "prometheus":
        err(f"{where}: needs a 'datasource' variable of type datasource for prometheus")
    for name, v in variables.items():
        if v.get("type") == "query":
            if v.get("datasource") != DS_REF:
                err(f"{where}: variable {name}: datasource must be {DS_REF}")
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if not q:
                err(f"{where}: variable {name} has no query")
            else:
                exprs.append((f"{where} variable {name}", q))

    def panels(list_):
        for p in list_:
            yield p
            yield from panels(p.get("panels", []))
    ids = []
    for p in panels(d.get("panels", [])):
        pid, title = p.get("id"), p.get("title", "?")
        ids.append(pid)
        if not isinstance(pid, int):
            err(f"{where}: panel {title!r} has no integer id")
        if "gridPos" not in p:
            err(f"{where}: panel {title!r} has no gridPos")
        if p.get("type") == "row":
            continue
        if p.get("type") not in ("timeseries", "stat", "gauge", "bargauge", "table", "text", "heatmap"):
            err(f"{where}: panel {title!r} has unexpected type {p.get('type')!r}")
        if p.get("datasource") != DS_REF:
            err(f"{where}: panel {title!r}: datasource must be {DS_REF}")
        targets = p.get("targets", [])
        if not targets:
            err(f"{where}: panel {title!r} has no targets")
        refs = [t.get("refId") for t in targets]
        routed = all_routed([t["expr"] for t in targets if isinstance(t.get("expr"), str)])
        if len(set(refs)) != len(refs) or None in refs:
            err(f"{where}: panel {title!r}: refIds must be set and unique: {refs}")
        for t in targets:
            if t.get("datasource") != DS_REF:
                err(f"{where}: panel {title!r} target {t.get('refId')}: datasource must be {DS_REF}")
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                err(f"{where}: panel {title!r} target {t.get('refId')} has no expr")
            else:
                exprs.append((f"{where} panel {title!r} {t.get('refId')}", expr))
                check_filters(f"{where} panel {title!r} {t.get('refId')}", expr, routed)
    dup = sorted({i for i in ids if ids.count(i) > 1 and i is not None})
    if dup:
        err(f"{where}: duplicate panel ids {dup}")

    # Every $variable used is defined (or a Grafana built-in).
    for src, expr in exprs:
        if not src.startswith(where):
            continue
        for name in re.findall(r"\$\{?(\w+)", expr):
            if name not in variables and name not in BUILTIN:
                err(f"{src}: uses undefined variable ${name}")

# For promtool: each expression as a recording rule, Grafana variables
# replaced by what they expand to.
def expand(expr):
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)

def promql(src, expr):
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", expr, flags=re.S)
    if m:
        return m.group(1)
    if "label_values" in expr or "query_result" in expr or expr.strip().startswith("metrics("):
        err(f"{src}: unsupported variable query {expr!r}")
        return None
    return expr

with open(sys.argv[1], "w", encoding="utf-8") as out:
    out.write("groups:\n  - name: dashboards\n    rules:\n")
    for i, (src, expr) in enumerate(exprs):
        q = promql(src, expr)
        if q is None:
            continue
        out.write(f"      # {src}\n")
        out.write(f"      - record: dashboard_expr_{i}\n        expr: {json.dumps(expand(q))}\n")

if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"  {len(files)} dashboards, {len(exprs)} queries")
PY
log "promtool parses every dashboard query"
if ! promtool_out="$(promtool check rules "$exprs_file" 2>&1)"; then
    printf '%s\n' "$promtool_out" >&2
    for rule in $(printf '%s\n' "$promtool_out" | grep -o 'dashboard_expr_[0-9]*' | sort -u); do
        printf '  %s is %s\n' "$rule" "$(grep -B1 "record: $rule\$" "$exprs_file" | head -n1 | sed 's/^ *# //')" >&2
    done
    echo "a dashboard query is not valid PromQL" >&2
    exit 1
fi

log "monitoring checks passed"
