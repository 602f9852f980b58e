#!/usr/bin/env bash
# Checks the Kubernetes manifests under k8s/ (run from `make test`; any
# working directory is fine, it cd's to the repository root).
#
#   scripts/check-k8s.sh          check everything, exit non-zero on a problem
#   scripts/check-k8s.sh --sync   first refresh the two generated copies
#                                 (k8s/base/production.yaml from
#                                 settings/production.yaml, and
#                                 k8s/base/prometheusrule.yaml from
#                                 prometheus/alerts.yaml), then check
#
# What it does:
#  1. Installs, only when missing and only into the project-local .tools/
#     (never into the system's or the user's Python, which PEP 668 forbids on
#     Debian 12 and Ubuntu 24.04): a Python virtual environment .tools/venv
#     with PyYAML and kubernetes-validate (the newest; offline JSON schemas),
#     and - because kubernetes-validate >= 1.34 no longer ships 1.24 schemas -
#     kubernetes-validate 1.33.1 into .tools/kubernetes-validate-1.33.1
#     (pip --target, not on the normal import path) for the 1.24 schemas.
#     Set GATEWAY_TOOLS_DIR to keep them elsewhere.
#  2. Renders every overlay (k8s/overlays/*) with `kustomize build` or
#     `kubectl kustomize` (kustomize >= v5 needed) and fails if one does not
#     render; also renders overlays/deployment + components/prestop-sleep-action.
#     Without a usable kustomize it prints "kustomize not available: skipping
#     render" and checks the raw manifest files instead.
#  3. Validates every rendered resource and every manifest file under k8s/
#     (strict: unknown fields are errors) against the Kubernetes 1.24 schemas
#     and the newest schemas kubernetes-validate ships. The prestop-sleep-action
#     component needs Kubernetes >= 1.30 and is validated against the newest
#     only. Prometheus Operator CRDs (ServiceMonitor, PrometheusRule) have no
#     schema there: they get a structural check and a SKIP line instead.
#  4. Consistency checks: the ConfigMap source is byte-identical to
#     settings/production.yaml; the DaemonSet and Deployment pod templates are
#     identical; terminationGracePeriodSeconds > shutdown_timeout_secs +
#     preStop sleep; the PrometheusRule's spec.groups equal the groups of
#     prometheus/alerts.yaml; plus ports, probes, securityContext, workers
#     from the CPU limit, service links off, selectors, no real Secret.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SETTINGS=settings/production.yaml
CM_COPY=k8s/base/production.yaml
ALERTS=prometheus/alerts.yaml
RULE=k8s/base/prometheusrule.yaml
# The last kubernetes-validate release that still ships the 1.24 schemas
# (1.33.1 ships 1.22..1.33; 1.34.0 and later start at 1.25).
KV_FOR_124=1.33.1
OLDEST=1.24
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

sync=0
case "${1:-}" in
  "") ;;
  --sync) sync=1 ;;
  -h | --help) sed -n '2,37p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--sync]" >&2; exit 2 ;;
esac

say() { printf 'check-k8s: %s\n' "$*"; }

command -v python3 >/dev/null || { say "python3 is required"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------- tools
TOOLS=${GATEWAY_TOOLS_DIR:-$PWD/.tools}
VENV=$TOOLS/venv
PY=$VENV/bin/python
pip_install() { "$PY" -m pip install --quiet "$@"; }

if ! "$PY" -c 'import yaml, kubernetes_validate' 2>/dev/null; then
  if [ ! -x "$PY" ]; then
    say "creating a Python virtual environment in $VENV (project-local; nothing goes into the system's Python)"
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV" || {
      say "python3 cannot create a virtual environment: install python3-venv (Debian/Ubuntu: apt-get install python3-venv), then run again"
      exit 1
    }
  fi
  say "installing PyYAML and kubernetes-validate into $VENV (pip)"
  pip_install PyYAML kubernetes-validate
fi

kv_versions() { # [extra sys.path entry] -> "pkgversion schema-versions..."
  PYTHONPATH="${1:-}${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c '
import kubernetes_validate.utils as u, kubernetes_validate.version as v
print(v.__version__, " ".join(u.major_minor(x) for x in u.all_versions()))'
}

read -r kv_version kv_schemas <<<"$(kv_versions)"
NEWEST=${kv_schemas##* }
kv_124_path=""
kv_124_version=$kv_version
if [[ " $kv_schemas " != *" $OLDEST "* ]]; then
  kv_124_path=$TOOLS/kubernetes-validate-$KV_FOR_124
  if [ ! -d "$kv_124_path/kubernetes_validate" ]; then
    say "kubernetes-validate $kv_version has no $OLDEST schemas: installing kubernetes-validate==$KV_FOR_124 into $kv_124_path (pip --target)"
    rm -rf "$kv_124_path.tmp"
    pip_install --no-deps --target "$kv_124_path.tmp" "kubernetes-validate==$KV_FOR_124"
    mv "$kv_124_path.tmp" "$kv_124_path"
  fi
  read -r kv_124_version kv_124_schemas <<<"$(kv_versions "$kv_124_path")"
  if [[ " $kv_124_schemas " != *" $OLDEST "* ]]; then
    say "FAIL: kubernetes-validate $kv_124_version in $kv_124_path has no $OLDEST schemas"
    exit 1
  fi
fi

# ---------------------------------------------------------------- python part
py=$work/check.py
cat >"$py" <<'PY'
import functools, glob, json, os, re, sys
import yaml

passed = 0
failed = 0


def ok(msg):
    global passed
    passed += 1
    print("  ok    " + msg)


def fail(msg):
    global failed
    failed += 1
    print("  FAIL  " + msg)


def skip(msg):
    print("  SKIP  " + msg)


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def is_manifest(d):
    return (isinstance(d, dict) and "apiVersion" in d and "kind" in d
            and not str(d["apiVersion"]).startswith("kustomize.config.k8s.io/"))


def kn(d):
    return "%s/%s" % (d.get("kind"), (d.get("metadata") or {}).get("name"))


CRD_GROUPS = ("monitoring.coreos.com",)


def crd_structure(d):
    """Minimal shape check for the Prometheus Operator kinds we ship."""
    spec = d.get("spec") or {}
    if d["kind"] == "ServiceMonitor":
        eps = spec.get("endpoints")
        if not isinstance(spec.get("selector"), dict) or not isinstance(eps, list) or not eps:
            return "spec.selector and a non-empty spec.endpoints are required"
        for e in eps:
            if not isinstance(e, dict) or not (e.get("port") or e.get("targetPort")):
                return "every endpoint needs port (or targetPort)"
    elif d["kind"] == "PrometheusRule":
        groups = spec.get("groups")
        if not isinstance(groups, list):
            return "spec.groups must be a list"
        for g in groups:
            if not isinstance(g, dict) or not g.get("name") or not isinstance(g.get("rules"), list):
                return "every group needs a name and a rules list"
            for r in g["rules"]:
                if not isinstance(r, dict) or not (r.get("alert") or r.get("record")) or "expr" not in r:
                    return "every rule needs alert or record, and expr"
    else:
        return "unknown custom resource kind"
    return None


def cmd_validate(args):
    """validate KV_PATH VERSION LABEL=FILE..."""
    kv_path, version, items = args[0], args[1], args[2:]
    if kv_path:
        sys.path.insert(0, kv_path)
    import kubernetes_validate.utils as u
    import kubernetes_validate.version as kvv
    # Every resource loads the same big definitions file: read it once.
    u.schema_contents = functools.lru_cache(maxsize=None)(u.schema_contents)
    have = [u.major_minor(v) for v in u.all_versions()]
    if version not in have:
        fail("kubernetes-validate %s has no schemas for Kubernetes %s" % (kvv.__version__, version))
        return
    for item in items:
        label, path = item.split("=", 1)
        docs = [d for d in load_docs(path) if is_manifest(d)]
        if not docs:
            fail("%s: no Kubernetes resources found" % label)
            continue
        errors, skipped, n = [], [], 0
        for d in docs:
            group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else ""
            if group in CRD_GROUPS:
                problem = crd_structure(d)
                if problem:
                    errors.append("%s: %s" % (kn(d), problem))
                else:
                    skipped.append(kn(d))
                continue
            try:
                got = u.validate(d, version, strict=True)
                if got != version:
                    errors.append("%s: validated against %s instead of %s" % (kn(d), got, version))
                else:
                    n += 1
            except u.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                errors.append("%s: %s: %s" % (kn(d), where, e.message))
            except u.SchemaNotFoundError as e:
                errors.append("%s: %s" % (kn(d), e.message))
        if errors:
            for e in errors:
                fail("k8s %s strict: %s: %s" % (version, label, e))
        elif n:
            ok("k8s %s strict: %s: %d resource(s) valid" % (version, label, n))
        if skipped:
            skip("k8s %s: %s: no schema for CRDs (Prometheus Operator), structure checked only: %s"
                 % (version, label, ", ".join(skipped)))


# ---------------------------------------------------------------- consistency

def port_of(listen, default):
    if listen is None:
        return default
    return int(str(listen).rsplit(":", 1)[1])


def find(docs, kind, name=None, prefix=None):
    out = []
    for d in docs:
        if d.get("kind") != kind:
            continue
        n = d["metadata"]["name"]
        if name is not None and n != name:
            continue
        if prefix is not None and not (n == prefix or n.startswith(prefix + "-")):
            continue
        out.append(d)
    return out


def prestop_seconds(c):
    pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    cmd = (pre.get("exec") or {}).get("command") or []
    if len(cmd) == 2 and cmd[0].endswith("sleep"):
        return int(cmd[1])
    if pre:
        return None
    return 0


def check_workload(label, docs, wl, settings):
    what = "%s: %s" % (label, kn(wl))
    tpl = wl["spec"]["template"]
    spec = tpl["spec"]
    cs = [c for c in spec["containers"] if c["name"] == "gateway"]
    if len(cs) != 1:
        fail("%s: exactly one container named gateway expected" % what)
        return
    c = cs[0]
    server = settings.get("server") or {}
    admin = settings.get("admin") or {}

    # settings file mounted where --config points, from the generated ConfigMap
    args = c.get("args") or []
    cfg = None
    if "--config" in args and args.index("--config") + 1 < len(args):
        cfg = args[args.index("--config") + 1]
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    if cfg != "/etc/gateway/production.yaml":
        fail("%s: args must contain --config /etc/gateway/production.yaml (got %s)" % (what, args))
    elif "/etc/gateway" not in mounts or "configMap" not in vols.get(mounts["/etc/gateway"], {}):
        fail("%s: /etc/gateway must be a ConfigMap volume mount" % what)
    else:
        cm_name = vols[mounts["/etc/gateway"]]["configMap"]["name"]
        cms = find(docs, "ConfigMap", name=cm_name)
        if cms:
            if "production.yaml" in (cms[0].get("data") or {}):
                ok("%s: --config %s is key production.yaml of ConfigMap %s" % (what, cfg, cm_name))
            else:
                fail("%s: ConfigMap %s has no key production.yaml" % (what, cm_name))
        elif cm_name.startswith("gateway-config"):
            skip("%s: ConfigMap %s is generated by kustomize (not in raw files)" % (what, cm_name))
        else:
            fail("%s: mounted ConfigMap %s does not exist" % (what, cm_name))

    if spec.get("enableServiceLinks") is False:
        ok("%s: enableServiceLinks false (no GATEWAY_* service-link variables)" % what)
    else:
        fail("%s: enableServiceLinks must be false: the Service 'gateway' would inject "
             "GATEWAY_SERVICE_HOST/GATEWAY_PORT..., which the gateway rejects as unknown settings" % what)

    # ports = the listeners in the settings
    ports = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
    want = {"http": port_of(server.get("listen"), 8080), "admin": port_of(admin.get("listen"), 9090)}
    if ports == want:
        ok("%s: container ports %s match server.listen/admin.listen" % (what, want))
    else:
        fail("%s: container ports %s != settings listeners %s" % (what, ports, want))

    # probes on the admin port
    def probe(name, path):
        p = c.get(name) or {}
        hg = p.get("httpGet") or {}
        if hg.get("path") == path and hg.get("port") in ("admin", want["admin"]):
            return True
        fail("%s: %s must be httpGet %s on the admin port (got %s)" % (what, name, path, hg or p))
        return False
    probes_ok = [probe("livenessProbe", "/health/live"), probe("readinessProbe", "/health/ready")]
    if "startupProbe" not in c:
        fail("%s: startupProbe missing" % what)
        probes_ok.append(False)
    if all(probes_ok):
        ok("%s: probes: startup + liveness /health/live, readiness /health/ready on admin" % what)

    # security context
    psc, csc = spec.get("securityContext") or {}, c.get("securityContext") or {}
    def eff(key):
        return csc.get(key, psc.get(key))
    problems = []
    if eff("runAsNonRoot") is not True: problems.append("runAsNonRoot")
    if eff("runAsUser") != 65532: problems.append("runAsUser 65532")
    if csc.get("readOnlyRootFilesystem") is not True: problems.append("readOnlyRootFilesystem")
    if csc.get("allowPrivilegeEscalation") is not False: problems.append("allowPrivilegeEscalation false")
    if ((csc.get("capabilities") or {}).get("drop")) != ["ALL"]: problems.append("capabilities drop ALL")
    if ((eff("seccompProfile") or {}).get("type")) != "RuntimeDefault": problems.append("seccompProfile RuntimeDefault")
    if "/tmp" not in mounts or "emptyDir" not in vols.get(mounts["/tmp"], {}): problems.append("emptyDir on /tmp")
    if problems:
        fail("%s: securityContext/volumes missing: %s" % (what, ", ".join(problems)))
    else:
        ok("%s: non-root 65532, read-only root FS (+ /tmp emptyDir), no privilege escalation, caps dropped, RuntimeDefault seccomp" % what)

    # workers from the CPU limit
    env = {e["name"]: e for e in c.get("env") or []}
    w = ((env.get("GATEWAY_SERVER__WORKERS") or {}).get("valueFrom") or {}).get("resourceFieldRef") or {}
    limit = str(((c.get("resources") or {}).get("limits") or {}).get("cpu", ""))
    if (w.get("resource") == "limits.cpu" and str(w.get("divisor", "1")) == "1"
            and w.get("containerName", "gateway") == "gateway"):
        if re.fullmatch(r"[1-9][0-9]*", limit):
            ok("%s: GATEWAY_SERVER__WORKERS = CPU limit (%s)" % (what, limit))
        else:
            fail("%s: CPU limit %r must be a whole number of cores (the downward API rounds up)" % (what, limit))
    else:
        fail("%s: GATEWAY_SERVER__WORKERS must come from resourceFieldRef limits.cpu, divisor 1" % what)
    bad_env = [n for n in env if n.startswith("GATEWAY_") and n.upper() != n]
    if bad_env:
        fail("%s: GATEWAY_* env names must be upper case: %s" % (what, bad_env))

    # drain timing
    shutdown = server.get("shutdown_timeout_secs", 30)
    src = "shutdown_timeout_secs"
    ov = env.get("GATEWAY_SERVER__SHUTDOWN_TIMEOUT_SECS")
    if ov is not None:
        if "value" not in ov:
            fail("%s: GATEWAY_SERVER__SHUTDOWN_TIMEOUT_SECS must be a literal to be checked" % what)
            return
        shutdown, src = int(ov["value"]), "GATEWAY_SERVER__SHUTDOWN_TIMEOUT_SECS"
    pre = prestop_seconds(c)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if pre is None:
        fail("%s: preStop must be a sleep (exec sleep N or sleep.seconds)" % what)
    elif pre == 0:
        fail("%s: a preStop sleep is required (endpoint removal needs time)" % what)
    elif grace > shutdown + pre:
        ok("%s: terminationGracePeriodSeconds %d > %s %d + preStop %d (margin %ds)"
           % (what, grace, src, shutdown, pre, grace - shutdown - pre))
    else:
        fail("%s: terminationGracePeriodSeconds %d must exceed %s %d + preStop %d"
             % (what, grace, src, shutdown, pre))

    # services / policies select these pods
    labels = tpl["metadata"].get("labels") or {}
    sel = wl["spec"]["selector"].get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in sel.items()):
        fail("%s: selector %s does not match template labels" % (what, sel))
    for svc in find(docs, "Service"):
        s = svc["spec"].get("selector") or {}
        if s and all(labels.get(k) == v for k, v in s.items()):
            named = {p["name"] for p in c.get("ports") or []}
            missing = [p.get("targetPort") for p in svc["spec"]["ports"]
                       if isinstance(p.get("targetPort"), str) and p["targetPort"] not in named]
            if missing:
                fail("%s: %s targets unknown container ports %s" % (what, kn(svc), missing))


def cmd_consistency(args):
    """consistency SETTINGS ALERTS(or -) LABEL=FILE... (rendered overlays or raw bundle)"""
    settings_path, alerts_path, items = args[0], args[1], args[2:]
    settings_text = open(settings_path).read()
    settings = yaml.safe_load(settings_text) or {}
    alerts = None
    if alerts_path != "-":
        alerts = (yaml.safe_load(open(alerts_path)) or {}).get("groups")
    templates = {}
    for item in items:
        label, path = item.split("=", 1)
        docs = [d for d in load_docs(path) if is_manifest(d)]
        # ConfigMap content = settings/production.yaml, byte for byte
        cms = find(docs, "ConfigMap", prefix="gateway-config")
        for cm in cms:
            if (cm.get("data") or {}).get("production.yaml") == settings_text:
                ok("%s: %s data[production.yaml] is identical to %s" % (label, kn(cm), settings_path))
            else:
                fail("%s: %s data[production.yaml] differs from %s (run scripts/check-k8s.sh --sync)"
                     % (label, kn(cm), settings_path))
        wls = find(docs, "Deployment", name="gateway") + find(docs, "DaemonSet", name="gateway")
        if len(wls) != 1:
            fail("%s: exactly one gateway Deployment or DaemonSet expected, found %d" % (label, len(wls)))
        for wl in wls:
            check_workload(label, docs, wl, settings)
            templates[label] = (wl["kind"], wl["spec"]["template"])
        # PrometheusRule = prometheus/alerts.yaml
        for pr in find(docs, "PrometheusRule"):
            if alerts is None:
                skip("%s: %s not compared: prometheus/alerts.yaml does not exist yet" % (label, kn(pr)))
            elif pr["spec"].get("groups") == alerts:
                ok("%s: %s spec.groups equal prometheus/alerts.yaml groups (%d group(s), %d rule(s))"
                   % (label, kn(pr), len(alerts), sum(len(g.get("rules") or []) for g in alerts)))
            else:
                fail("%s: %s spec.groups differ from prometheus/alerts.yaml (run scripts/check-k8s.sh --sync)"
                     % (label, kn(pr)))
        # no real Secret outside the dev overlay
        secrets = find(docs, "Secret")
        if "dev" not in label and secrets:
            fail("%s: Secrets must not be part of the manifests: %s" % (label, [kn(s) for s in secrets]))
        hpas = find(docs, "HorizontalPodAutoscaler")
        for h in hpas:
            ref = h["spec"]["scaleTargetRef"]
            if not any(w["kind"] == ref["kind"] and w["metadata"]["name"] == ref["name"] for w in wls):
                fail("%s: %s scales %s/%s, which is not in the overlay" % (label, kn(h), ref["kind"], ref["name"]))
        if any(w["kind"] == "DaemonSet" for w in wls):
            if hpas or find(docs, "PodDisruptionBudget"):
                fail("%s: a DaemonSet layout must have no HPA and no PDB" % label)
            local = [s for s in find(docs, "Service") if s["spec"].get("internalTrafficPolicy") == "Local"]
            if local:
                ok("%s: DaemonSet, no HPA/PDB, node-local Service %s (internalTrafficPolicy Local)"
                   % (label, ", ".join(kn(s) for s in local)))
            else:
                fail("%s: the DaemonSet layout needs a Service with internalTrafficPolicy: Local" % label)
        for pdb in find(docs, "PodDisruptionBudget"):
            sel = pdb["spec"]["selector"].get("matchLabels") or {}
            if not any(all((w["spec"]["template"]["metadata"].get("labels") or {}).get(k) == v
                           for k, v in sel.items()) for w in wls):
                fail("%s: %s selects no gateway pods" % (label, kn(pdb)))
    # one pod template for both layouts
    # (the dev overlay changes resources on purpose; "+" marks an optional
    # component variant)
    deps = [(l, t) for l, (k, t) in templates.items()
            if k == "Deployment" and "dev" not in l and "+" not in l]
    dss = [(l, t) for l, (k, t) in templates.items() if k == "DaemonSet"]
    if dss and deps:
        for dl, dt in deps:
            for sl, st in dss:
                if dt == st:
                    ok("pod template of %s (Deployment) == pod template of %s (DaemonSet)" % (dl, sl))
                else:
                    a = json.dumps(dt, indent=1, sort_keys=True).splitlines()
                    b = json.dumps(st, indent=1, sort_keys=True).splitlines()
                    import difflib
                    diff = "\n".join(list(difflib.unified_diff(a, b, dl, sl, lineterm=""))[:40])
                    fail("pod templates of %s and %s differ:\n%s" % (dl, sl, diff))
    elif deps and not dss:
        skip("DaemonSet/Deployment pod template comparison needs the rendered daemonset overlay")


def cmd_secret_example(args):
    """secret-example FILE KUSTOMIZATION..."""
    path, kusts = args[0], args[1:]
    name = os.path.basename(path)
    docs = [d for d in load_docs(path) if is_manifest(d)]
    want = {"GATEWAY_AUTH__PROVIDER__CLIENT_SECRET", "GATEWAY_AUTH__SESSION__SECRET", "GATEWAY_REDIS__URL"}
    if len(docs) != 1 or docs[0]["kind"] != "Secret":
        fail("%s: one Secret expected" % path)
        return
    data = docs[0].get("stringData") or {}
    if set(data) != want:
        fail("%s: keys must be %s (got %s)" % (path, sorted(want), sorted(data)))
    elif not all("REPLACE-ME" in str(v) for v in data.values()):
        fail("%s: every value must be a REPLACE-ME placeholder" % path)
    else:
        ok("%s: placeholders only for %s" % (path, ", ".join(sorted(want))))
    used = [k for k in kusts if name in json.dumps(yaml.safe_load(open(k)))]
    if used:
        fail("%s is referenced by %s: it must not be applied" % (path, used))
    else:
        ok("%s is not referenced by any kustomization" % path)


def cmd_sync_rule(args):
    """sync-rule ALERTS RULE: write the PrometheusRule from the rule file."""
    alerts_path, rule_path = args
    text = open(alerts_path).read()
    groups = (yaml.safe_load(text) or {}).get("groups")
    if not isinstance(groups, list):
        sys.exit("%s has no groups list" % alerts_path)
    lines = text.splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith("#") or lines[0].strip() == "---"):
        lines.pop(0)
    body = "\n".join(("  " + l) if l.strip() else "" for l in lines)
    head = (
        "# GENERATED by `scripts/check-k8s.sh --sync` from %s: do not edit here.\n"
        "# Edit %s, then run `scripts/check-k8s.sh --sync`; scripts/check-k8s.sh\n"
        "# fails while spec.groups differ from that file's groups.\n"
        "# Needs the Prometheus Operator CRDs. Many installs only load rules that\n"
        "# carry their release label (ruleSelector): add it here if yours does.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: gateway\n"
        "  labels:\n"
        "    app.kubernetes.io/name: gateway\n"
        "spec:\n" % (alerts_path, alerts_path))
    out = head + body + "\n"
    if (yaml.safe_load(out) or {}).get("spec", {}).get("groups") != groups:
        out = head + "  " + yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000).replace("\n", "\n  ").rstrip() + "\n"
    with open(rule_path, "w") as f:
        f.write(out)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"validate": cmd_validate, "consistency": cmd_consistency,
     "secret-example": cmd_secret_example, "sync-rule": cmd_sync_rule}[cmd](args)
    if cmd != "sync-rule":
        print("RESULT %d %d" % (passed, failed))


main()
PY

# Runs a python check, echoes its lines, adds its counts to the totals.
total_passed=0
total_failed=0
run_py() {
  local out rc=0
  out=$("$PY" "$py" "$@") || rc=$?
  printf '%s\n' "$out" | grep -v '^RESULT ' || true
  local result
  result=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1 || true)
  if [ "$rc" -ne 0 ] || [ -z "$result" ]; then
    say "FAIL: python check '$1' crashed (exit $rc)"
    total_failed=$((total_failed + 1))
    return
  fi
  read -r _ p f <<<"$result"
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
}
pass() { echo "  ok    $*"; total_passed=$((total_passed + 1)); }
flunk() { echo "  FAIL  $*"; total_failed=$((total_failed + 1)); }

# ---------------------------------------------------------------- --sync
if [ "$sync" = 1 ]; then
  cp "$SETTINGS" "$CM_COPY"
  say "synced $CM_COPY from $SETTINGS"
  if [ -f "$ALERTS" ]; then
    "$PY" "$py" sync-rule "$ALERTS" "$RULE"
    say "synced $RULE from $ALERTS"
  else
    say "$ALERTS does not exist: $RULE left as it is"
  fi
fi

# ---------------------------------------------------------------- copies
say "generated copies"
if cmp -s "$SETTINGS" "$CM_COPY"; then
  pass "$CM_COPY is byte-identical to $SETTINGS (ConfigMap source)"
else
  flunk "$CM_COPY differs from $SETTINGS: the ConfigMap would not ship the production settings; run scripts/check-k8s.sh --sync"
fi
alerts_arg=-
if [ -f "$ALERTS" ]; then
  alerts_arg=$ALERTS
else
  echo "  SKIP  $ALERTS does not exist yet: PrometheusRule groups not compared"
fi

# ---------------------------------------------------------------- render
renderer=""
render_note=""
version_of() { grep -oE 'v[0-9]+\.[0-9]+\.[0-9]+' | head -n 1; }
major_of() { local v=${1#v}; echo "${v%%.*}"; }
if command -v kustomize >/dev/null 2>&1; then
  kv=$(kustomize version 2>/dev/null | version_of || true)
  if [ -n "$kv" ] && [ "$(major_of "$kv")" -ge 5 ]; then
    renderer="kustomize build"; render_note="kustomize $kv"
  else
    render_note="kustomize ${kv:-of unknown version} is older than v5"
  fi
fi
if [ -z "$renderer" ] && command -v kubectl >/dev/null 2>&1; then
  kv=$(kubectl version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("kustomizeVersion",""))' 2>/dev/null || true)
  if [ -n "$kv" ] && [ "$(major_of "$kv")" -ge 5 ]; then
    renderer="kubectl kustomize"
    render_note="kubectl $(kubectl version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])') with kustomize $kv"
  else
    render_note="${render_note:+$render_note; }kubectl embeds kustomize ${kv:-of unknown version}, older than v5"
  fi
fi

rendered=()       # label=file pairs, validated against 1.24 and newest
rendered_newest=() # validated against newest only
overlays=()
for d in k8s/overlays/*/; do overlays+=("${d%/}"); done
if [ -n "$renderer" ]; then
  say "rendering overlays with $render_note"
  for o in "${overlays[@]}"; do
    out=$work/$(basename "$o").yaml
    if $renderer "$o" >"$out" 2>"$work/err"; then
      pass "$o renders ($(grep -c '^kind:' "$out") resources)"
      rendered+=("$o=$out")
    else
      flunk "$o does not render: $(cat "$work/err")"
    fi
  done
  # The optional >= 1.30 component, on top of the default overlay.
  # (kustomize wants relative paths to other kustomizations.)
  mkdir -p "$work/sleep-action"
  rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$PWD/k8s" "$work/sleep-action")
  cat >"$work/sleep-action/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel/overlays/deployment
components:
  - $rel/components/prestop-sleep-action
EOF
  label="k8s/overlays/deployment+components/prestop-sleep-action"
  if $renderer "$work/sleep-action" >"$work/sleep-action.yaml" 2>"$work/err"; then
    pass "$label renders"
    rendered_newest+=("$label=$work/sleep-action.yaml")
  else
    flunk "$label does not render: $(cat "$work/err")"
  fi
else
  say "kustomize not available: skipping render${render_note:+ ($render_note; need kustomize >= v5 or kubectl >= 1.27)}"
  say "checking the raw manifest files instead"
fi

# ---------------------------------------------------------------- validate
# Every file under k8s/ holding Kubernetes resources (kustomization files and
# the settings copy hold none and are left out by the python side).
raw=()
while IFS= read -r f; do
  if "$PY" - "$f" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]
ok = any(isinstance(d, dict) and "apiVersion" in d and "kind" in d
         and not str(d["apiVersion"]).startswith("kustomize.config.k8s.io/") for d in docs)
sys.exit(0 if ok else 1)
EOF
  then raw+=("$f=$f"); fi
done < <(find k8s -type f \( -name '*.yaml' -o -name '*.yml' \) | LC_ALL=C sort)

kv_124_label="kubernetes-validate $kv_124_version"
say "validating (strict) against Kubernetes $OLDEST ($kv_124_label) and $NEWEST (kubernetes-validate $kv_version, its newest)"
run_py validate "$kv_124_path" "$OLDEST" "${rendered[@]}" "${raw[@]}"
run_py validate "" "$NEWEST" "${rendered[@]}" "${rendered_newest[@]}" "${raw[@]}"

# ---------------------------------------------------------------- consistency
say "consistency"
if [ ${#rendered[@]} -gt 0 ]; then
  run_py consistency "$SETTINGS" "$alerts_arg" "${rendered[@]}" "${rendered_newest[@]}"
else
  # Raw fallback: the base objects plus the deployment overlay's own files.
  bundle=$work/raw-bundle.yaml
  for f in k8s/base/*.yaml k8s/overlays/deployment/*.yaml; do
    case $f in */kustomization.yaml | */secret.example.yaml | "$CM_COPY") continue ;; esac
    printf -- '---\n' >>"$bundle"; cat "$f" >>"$bundle"
  done
  run_py consistency "$SETTINGS" "$alerts_arg" "k8s/base and overlays/deployment (raw)=$bundle"
fi
kusts=()
while IFS= read -r f; do kusts+=("$f"); done < <(find k8s -name kustomization.yaml | LC_ALL=C sort)
run_py secret-example k8s/base/secret.example.yaml "${kusts[@]}"

echo "check-k8s: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
