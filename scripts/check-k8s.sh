#!/usr/bin/env bash
# Checks the Kubernetes manifests under k8s/ (run from `make test`; any
# working directory is fine, it cd's to the repository root).
#
#   scripts/check-k8s.sh          check everything, exit non-zero on a problem
#   scripts/check-k8s.sh --sync   first refresh the generated copies
#                                 (k8s/base/production.yaml from
#                                 settings/production.yaml,
#                                 k8s/base/prometheusrule.yaml from
#                                 prometheus/alerts.yaml, and
#                                 k8s/components/grafana-dashboards/dashboards/
#                                 plus its configMapGenerator entries from
#                                 grafana/dashboards/*.json), then check
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
#     render; then every combination of the optional components with the
#     overlays they are meant for (deployment: grafana-dashboards,
#     ingress-from-nodes; daemonset: those plus tolerations and hostport;
#     prestop-sleep-action on each, and everything at once on daemonset).
#     A component directory in no combination is a failure.
#     Without a usable kustomize it prints "kustomize not available: skipping
#     render" and checks the raw manifest files instead.
#  3. Validates every rendered resource and every manifest file under k8s/
#     (strict: unknown fields are errors) against the Kubernetes 1.24 schemas
#     and the newest schemas kubernetes-validate ships. The prestop-sleep-action
#     component needs Kubernetes >= 1.30 and is validated against the newest
#     only. Prometheus Operator CRDs (ServiceMonitor, PrometheusRule) have no
#     schema there: they get a structural check and a SKIP line instead.
#  4. Consistency checks: the ConfigMap source is byte-identical to
#     settings/production.yaml; the dashboard ConfigMaps hold exactly
#     grafana/dashboards/*.json, labelled grafana_dashboard "1", unhashed,
#     each small enough for client-side apply; the DaemonSet pod template
#     equals the Deployment's but for priorityClassName and resources, and a
#     component changes only the fields it owns (and does change them);
#     terminationGracePeriodSeconds > shutdown_timeout_secs + preStop sleep;
#     the PrometheusRule's spec.groups equal the groups of
#     prometheus/alerts.yaml; the DaemonSet is a node agent (its own
#     PriorityClass, percentage maxSurge/maxUnavailable - no surge with a
#     hostPort -, requests <= 500m CPU / 256Mi); a hostPort only with Pod
#     Security enforce=privileged, otherwise restricted; every namespaced
#     object in namespace gateway; the ServiceMonitor sets node, namespace and
#     pod; ipBlock rules only with ingress-from-nodes; plus ports, probes,
#     securityContext, workers from the CPU limit, service links off,
#     selectors, no real Secret.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SETTINGS=settings/production.yaml
CM_COPY=k8s/base/production.yaml
ALERTS=prometheus/alerts.yaml
RULE=k8s/base/prometheusrule.yaml
DASHBOARDS=grafana/dashboards
DASH_COMPONENT=k8s/components/grafana-dashboards
# The last kubernetes-validate release that still ships the 1.24 schemas
# (1.33.1 ships 1.22..1.33; 1.34.0 and later start at 1.25).
KV_FOR_124=1.33.1
OLDEST=1.24
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

sync=0
case "${1:-}" in
  "") ;;
  --sync) sync=1 ;;
  -h | --help) sed -n '2,54p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--sync]" >&2; exit 2 ;;
esac

say() { printf 'check-k8s: %s\n' "$*"; }

command -v python3 >/dev/null || { say "python3 is required"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------- tools
# shellcheck source=scripts/lib/k8s-venv.sh
source scripts/lib/k8s-venv.sh

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
    crd_skipped = {}
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
        for k in skipped:
            crd_skipped.setdefault(k, []).append(label)
    for k, labels in sorted(crd_skipped.items()):
        skip("k8s %s: no schema for the Prometheus Operator CRD %s, structure checked only (%d file(s)/render(s))"
             % (version, k, len(labels)))


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


# Optional components and the pod-template fields each may change (paths in
# the template; "*" = every container / every port).
COMPONENT_FIELDS = {
    "prestop-sleep-action": ["spec.containers.*.lifecycle.preStop"],
    "tolerations": ["spec.tolerations"],
    "hostport": ["spec.containers.*.ports.*.hostPort"],
    "grafana-dashboards": [],
    "ingress-from-nodes": [],
}
# Fields in which the DaemonSet (node agent) template may differ from the
# Deployment's: scheduling priority and the resources every node reserves.
NODE_AGENT_FIELDS = ["spec.priorityClassName", "spec.containers.*.resources"]
CLUSTER_SCOPED = {"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding"}
PLACEHOLDER_CIDR = "192.0.2.0/24"
placeholder_noted = []
# Client-side `kubectl apply` keeps the whole object in an annotation, and
# all annotations of an object together are limited to 256 KiB.
ANNOTATION_LIMIT = 262144


def parse_label(label):
    """'k8s/overlays/daemonset+tolerations+hostport' -> ('daemonset', ['tolerations', 'hostport'])"""
    parts = label.split("+")
    overlay = parts[0].rstrip("/").rsplit("/", 1)[-1]
    return overlay, [p.rsplit("/", 1)[-1] for p in parts[1:]]


def strip_fields(tpl, fields):
    import copy
    tpl = copy.deepcopy(tpl)

    def rm(node, keys):
        if not isinstance(node, (dict, list)) or not keys:
            return
        k, rest = keys[0], keys[1:]
        if k == "*":
            for child in (node if isinstance(node, list) else node.values()):
                rm(child, rest)
        elif isinstance(node, dict) and k in node:
            if rest:
                rm(node[k], rest)
            else:
                del node[k]
    for f in fields:
        rm(tpl, f.split("."))
    return tpl


def diff_text(a, b, la, lb):
    import difflib
    a = json.dumps(a, indent=1, sort_keys=True).splitlines()
    b = json.dumps(b, indent=1, sort_keys=True).splitlines()
    return "\n".join(list(difflib.unified_diff(a, b, la, lb, lineterm=""))[:40])


def quantity(v):
    """CPU or memory quantity -> float (cores or bytes)."""
    s = str(v)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for u, f in sorted(units.items(), key=lambda x: -len(x[0])):
        if s.endswith(u):
            return float(s[:-len(u)]) * f
    return float(s)


def percent(v):
    """'10%' -> 10; anything else (an absolute number) -> None."""
    m = re.fullmatch(r"([0-9]+)%", str(v))
    return int(m.group(1)) if m else None


def host_ports(tpl):
    return [p["hostPort"] for c in tpl["spec"].get("containers") or []
            for p in c.get("ports") or [] if p.get("hostPort")]


def check_namespaces(label, docs):
    bad = []
    for d in docs:
        ns = (d.get("metadata") or {}).get("namespace")
        if d["kind"] in CLUSTER_SCOPED:
            if ns:
                bad.append("%s (cluster-scoped) has namespace %s" % (kn(d), ns))
        elif ns != "gateway":
            bad.append("%s in namespace %r" % (kn(d), ns))
    if bad:
        fail("%s: every namespaced object belongs in namespace gateway: %s" % (label, "; ".join(bad)))
    else:
        ok("%s: every namespaced object is in namespace gateway" % label)


def check_servicemonitor(label, docs):
    want = {"node": "__meta_kubernetes_pod_node_name", "namespace": "__meta_kubernetes_namespace",
            "pod": "__meta_kubernetes_pod_name"}
    for sm in find(docs, "ServiceMonitor"):
        for ep in sm["spec"]["endpoints"]:
            got = {r.get("targetLabel"): (r.get("sourceLabels") or [None])[0]
                   for r in ep.get("relabelings") or [] if r.get("action", "replace") == "replace"}
            missing = [t for t, s in want.items() if got.get(t) != s]
            if missing:
                fail("%s: %s endpoint %s: relabelings must set %s (the dashboards filter on them)"
                     % (label, kn(sm), ep.get("port"), ", ".join("%s from %s" % (t, want[t]) for t in missing)))
            else:
                ok("%s: %s endpoint %s labels series with node, namespace and pod" % (label, kn(sm), ep.get("port")))


def check_pod_security(label, docs, wls):
    nss = find(docs, "Namespace", name="gateway")
    if len(nss) != 1:
        fail("%s: the Namespace gateway is missing" % label)
        return
    labels = nss[0]["metadata"].get("labels") or {}
    enforce = labels.get("pod-security.kubernetes.io/enforce")
    hp = [p for w in wls for p in host_ports(w["spec"]["template"])]
    hostnet = [kn(w) for w in wls if w["spec"]["template"]["spec"].get("hostNetwork")]
    if hostnet:
        fail("%s: %s uses hostNetwork: the gateway never needs it (use components/hostport)" % (label, hostnet))
    if hp:
        # Pod Security Standards, Baseline "Host Ports": hostPort must be
        # unset or 0 (a known list is not supported by the built-in admission
        # controller); Restricted includes Baseline. So only `privileged`.
        if enforce == "privileged":
            ok("%s: hostPort %s with Pod Security enforce=privileged (baseline and restricted forbid host ports)"
               % (label, hp))
        else:
            fail("%s: hostPort %s needs pod-security.kubernetes.io/enforce: privileged on the namespace "
                 "(got %s): the built-in admission rejects host ports at baseline and restricted" % (label, hp, enforce))
    elif enforce == "restricted":
        ok("%s: Namespace gateway enforces the restricted Pod Security Standard" % label)
    else:
        fail("%s: without host ports the namespace must enforce restricted (got %s)" % (label, enforce))


def check_daemonset(label, docs, wl):
    what = "%s: %s" % (label, kn(wl))
    spec = wl["spec"]
    tpl = spec["template"]["spec"]
    pc = tpl.get("priorityClassName")
    if not pc:
        fail("%s: a node agent needs a priorityClassName (to get its place on a full node)" % what)
    elif pc.startswith("system-"):
        fail("%s: priorityClassName %s is reserved for system components (kube-system by default)" % (what, pc))
    elif not find(docs, "PriorityClass", name=pc):
        fail("%s: PriorityClass %s is not part of the overlay" % (what, pc))
    else:
        prio = find(docs, "PriorityClass", name=pc)[0]
        if prio.get("globalDefault"):
            fail("%s: PriorityClass %s must not be the global default" % (what, pc))
        elif not 0 < int(prio.get("value", 0)) < 1000000000:
            fail("%s: PriorityClass %s value %s must be > 0 and below the system classes" % (what, pc, prio.get("value")))
        else:
            ok("%s: priorityClassName %s (value %s, not the default)" % (what, pc, prio["value"]))
    us = spec.get("updateStrategy") or {}
    ru = us.get("rollingUpdate") or {}
    surge, unavail = percent(ru.get("maxSurge", 0)), percent(ru.get("maxUnavailable", 1))
    if us.get("type") != "RollingUpdate" or surge is None or unavail is None:
        fail("%s: updateStrategy must be RollingUpdate with maxSurge and maxUnavailable as percentages "
             "(an absolute number does not scale with the node count): %s" % (what, us))
    elif host_ports(spec["template"]):
        if surge == 0 and 0 < unavail <= 25:
            ok("%s: hostPort: no surge (two pods cannot hold one host port), maxUnavailable %s%%" % (what, unavail))
        else:
            fail("%s: with a hostPort maxSurge must be 0%% (a surge pod never fits next to the old one) and "
                 "maxUnavailable a small percentage, got %s" % (what, ru))
    elif unavail == 0 and 0 < surge <= 50:
        ok("%s: surge-first update of %s%% of the nodes at a time, maxUnavailable 0%%" % (what, surge))
    else:
        fail("%s: node-local clients need surge-first updates: maxSurge a percentage in (0, 50], "
             "maxUnavailable 0%%, got %s" % (what, ru))
    for c in tpl["containers"]:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        try:
            cpu_req, mem_req = quantity(req["cpu"]), quantity(req["memory"])
            cpu_lim, mem_lim = quantity(lim["cpu"]), quantity(lim["memory"])
        except (KeyError, ValueError) as e:
            fail("%s: container %s needs cpu and memory requests and limits (%s)" % (what, c["name"], e))
            continue
        if cpu_req <= 0.5 and mem_req <= 256 * 2**20 and cpu_req <= cpu_lim and mem_req <= mem_lim:
            ok("%s: container %s requests %s CPU / %s on every node (limits %s / %s)"
               % (what, c["name"], req["cpu"], req["memory"], lim["cpu"], lim["memory"]))
        else:
            fail("%s: container %s: every node reserves the requests: keep them modest (<= 500m CPU, "
                 "<= 256Mi) and within the limits, got requests %s limits %s" % (what, c["name"], req, lim))


def check_dashboards(label, docs, dash_dir):
    cms = [c for c in find(docs, "ConfigMap")
           if ((c["metadata"].get("labels") or {}).get("grafana_dashboard")) is not None]
    sources = sorted(glob.glob(os.path.join(dash_dir, "*.json")))
    by_key = {}
    for cm in cms:
        if cm["metadata"]["labels"]["grafana_dashboard"] != "1":
            fail("%s: %s: label grafana_dashboard must be \"1\"" % (label, kn(cm)))
        if re.search(r"-[24-9bcdfghkmt]{10}$", cm["metadata"]["name"]):  # kustomize's hash alphabet
            fail("%s: %s: the name carries a hash suffix: each change would leave the old ConfigMap "
                 "(and a duplicate dashboard) behind" % (label, kn(cm)))
        size = len(json.dumps(cm))
        if size >= ANNOTATION_LIMIT:
            fail("%s: %s is %d bytes: client-side kubectl apply cannot keep it in its %d-byte "
                 "annotation; split the dashboard" % (label, kn(cm), size, ANNOTATION_LIMIT))
        for k, v in (cm.get("data") or {}).items():
            by_key[k] = (cm, v)
    want = {os.path.basename(p): p for p in sources}
    if set(by_key) != set(want):
        fail("%s: dashboard ConfigMaps hold %s, grafana/dashboards has %s (run scripts/check-k8s.sh --sync)"
             % (label, sorted(by_key), sorted(want)))
        return
    for key, path in sorted(want.items()):
        cm, v = by_key[key]
        if v != open(path, encoding="utf-8").read():
            fail("%s: %s data[%s] differs from %s (run scripts/check-k8s.sh --sync)" % (label, kn(cm), key, path))
        else:
            ok("%s: %s data[%s] = %s, labelled grafana_dashboard=\"1\", %d KiB"
               % (label, kn(cm), key, path, len(json.dumps(cm)) // 1024))


def check_netpol(label, docs, comps):
    for np_ in find(docs, "NetworkPolicy", name="gateway"):
        blocks = [(p.get("ipBlock") or {}).get("cidr") for r in np_["spec"].get("ingress") or []
                  for p in r.get("from") or [] if "ipBlock" in p
                  if any(x.get("port") in (8080, "http") for x in r.get("ports") or [])]
        if "ingress-from-nodes" in comps:
            if not blocks:
                fail("%s: %s: ingress-from-nodes added no ipBlock rule for port 8080" % (label, kn(np_)))
            elif PLACEHOLDER_CIDR in blocks:
                ok("%s: %s admits port 8080 from %s" % (label, kn(np_), blocks))
                if not placeholder_noted:
                    placeholder_noted.append(label)
                    skip("components/ingress-from-nodes: the ipBlock is still the placeholder %s (matches "
                         "nothing): put your node CIDR there before using it" % PLACEHOLDER_CIDR)
            else:
                ok("%s: %s admits port 8080 from %s" % (label, kn(np_), blocks))
        elif blocks:
            fail("%s: %s: ipBlock rules %s without components/ingress-from-nodes" % (label, kn(np_), blocks))


def check_component_effects(label, docs, wls, comps):
    """Each listed component changed what it is for (a patch whose target
    does not exist is silently skipped by kustomize)."""
    tpls = [w["spec"]["template"] for w in wls]
    kinds = {w["kind"] for w in wls}
    for comp in comps:
        if comp == "tolerations":
            good = kinds == {"DaemonSet"} and all(t["spec"].get("tolerations") for t in tpls)
        elif comp == "hostport":
            good = kinds == {"DaemonSet"} and all(host_ports(t) for t in tpls)
        elif comp == "prestop-sleep-action":
            good = all("sleep" in ((c.get("lifecycle") or {}).get("preStop") or {})
                       for t in tpls for c in t["spec"]["containers"])
        elif comp == "grafana-dashboards":
            good = any((c["metadata"].get("labels") or {}).get("grafana_dashboard") for c in find(docs, "ConfigMap"))
        elif comp == "ingress-from-nodes":
            good = True  # check_netpol
        else:
            fail("%s: unknown component %s: teach scripts/check-k8s.sh what it may change" % (label, comp))
            continue
        if not good:
            fail("%s: component %s had no effect (its patch target is not in this overlay: %s)"
                 % (label, comp, sorted(kinds)))
    for t in tpls:
        if "tolerations" not in comps and t["spec"].get("tolerations"):
            fail("%s: tolerations outside components/tolerations" % label)


def cmd_consistency(args):
    """consistency SETTINGS ALERTS(or -) DASHBOARD_DIR LABEL=FILE... (rendered overlays or raw bundle)"""
    settings_path, alerts_path, dash_dir, items = args[0], args[1], args[2], args[3:]
    settings_text = open(settings_path).read()
    settings = yaml.safe_load(settings_text) or {}
    alerts = None
    if alerts_path != "-":
        alerts = (yaml.safe_load(open(alerts_path)) or {}).get("groups")
    templates = {}
    for item in items:
        label, path = item.split("=", 1)
        raw = "(raw)" in label
        overlay, comps = parse_label(label)
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
            templates[label] = (wl["kind"], overlay, comps, wl["spec"]["template"])
            if wl["kind"] == "DaemonSet":
                check_daemonset(label, docs, wl)
            elif host_ports(wl["spec"]["template"]):
                fail("%s: %s: hostPort on a Deployment (more than one replica per node cannot start)"
                     % (label, kn(wl)))
        if not raw:
            check_namespaces(label, docs)
            check_pod_security(label, docs, wls)
        check_servicemonitor(label, docs)
        check_netpol(label, docs, comps)
        check_component_effects(label, docs, wls, comps)
        if "grafana-dashboards" in comps:
            check_dashboards(label, docs, dash_dir)
        elif any((c["metadata"].get("labels") or {}).get("grafana_dashboard") for c in find(docs, "ConfigMap")):
            fail("%s: dashboard ConfigMaps without components/grafana-dashboards" % label)
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
        if overlay != "dev" and secrets:
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

    # One pod template for both layouts: the DaemonSet's may differ from the
    # Deployment's only in NODE_AGENT_FIELDS (the dev overlay changes
    # resources on purpose and is left out).
    plain = {(k, o): (l, t) for l, (k, o, c, t) in templates.items() if not c and o != "dev"}
    dep, ds = plain.get(("Deployment", "deployment")), plain.get(("DaemonSet", "daemonset"))
    if dep and ds:
        a, b = strip_fields(dep[1], NODE_AGENT_FIELDS), strip_fields(ds[1], NODE_AGENT_FIELDS)
        if a == b:
            ok("pod template of %s (Deployment) == pod template of %s (DaemonSet) but for %s"
               % (dep[0], ds[0], ", ".join(NODE_AGENT_FIELDS)))
        else:
            fail("pod templates of %s and %s differ beyond %s:\n%s"
                 % (dep[0], ds[0], NODE_AGENT_FIELDS, diff_text(a, b, dep[0], ds[0])))
    elif dep and not ds:
        skip("DaemonSet/Deployment pod template comparison needs the rendered daemonset overlay")
    # A component changes only the template fields it owns.
    for l, (k, o, comps, t) in sorted(templates.items()):
        if not comps:
            continue
        ref = plain.get((k, o))
        if not ref:
            fail("%s: the plain overlay %s was not rendered to compare with" % (l, o))
            continue
        fields = [f for c in comps for f in COMPONENT_FIELDS.get(c, [])]
        a, b = strip_fields(ref[1], fields), strip_fields(t, fields)
        if a == b:
            ok("%s: pod template = %s's%s" % (l, ref[0], " but for " + ", ".join(fields) if fields else ""))
        else:
            fail("%s: pod template differs from %s's beyond %s:\n%s"
                 % (l, ref[0], fields or "nothing", diff_text(a, b, ref[0], l)))


def cmd_sync_dashboards(args):
    """dashboards SRC_DIR COMPONENT_DIR check|sync: the component's copies of
    the dashboards and its generated configMapGenerator entries."""
    src_dir, comp_dir, mode = args
    import filecmp, shutil
    sources = sorted(glob.glob(os.path.join(src_dir, "*.json")))
    copy_dir = os.path.join(comp_dir, "dashboards")
    kust = os.path.join(comp_dir, "kustomization.yaml")
    begin = "  # BEGIN generated by scripts/check-k8s.sh --sync (one entry per grafana/dashboards/*.json)\n"
    end = "  # END generated\n"
    block = begin
    for p in sources:
        name = os.path.basename(p)
        block += (
            "  - name: %s\n"
            "    namespace: gateway\n"
            "    files:\n"
            "      - dashboards/%s\n"
            "    options:\n"
            "      disableNameSuffixHash: true\n"
            "      labels:\n"
            "        grafana_dashboard: \"1\"\n"
            "        app.kubernetes.io/name: gateway\n"
            "        app.kubernetes.io/component: dashboards\n"
            "      annotations:\n"
            "        grafana_folder: Gateway\n"
            % ("gateway-dashboard-" + re.sub(r"^gateway-", "", name[:-5]), name))
    block += end
    text = open(kust).read()
    if begin not in text or end not in text:
        fail("%s: the generated block markers are missing" % kust)
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    new_text = head + block + tail
    copies = sorted(glob.glob(os.path.join(copy_dir, "*.json")))
    if mode == "sync":
        os.makedirs(copy_dir, exist_ok=True)
        for p in copies:
            if os.path.basename(p) not in {os.path.basename(s) for s in sources}:
                os.remove(p)
        for p in sources:
            shutil.copyfile(p, os.path.join(copy_dir, os.path.basename(p)))
        with open(kust, "w") as f:
            f.write(new_text)
        return
    names = [os.path.basename(p) for p in sources]
    if [os.path.basename(p) for p in copies] != names:
        fail("%s holds %s, %s has %s (run scripts/check-k8s.sh --sync)"
             % (copy_dir, [os.path.basename(p) for p in copies], src_dir, names))
    else:
        differ = [n for n in names if not filecmp.cmp(os.path.join(src_dir, n), os.path.join(copy_dir, n), shallow=False)]
        if differ:
            fail("%s: %s differ from %s (run scripts/check-k8s.sh --sync)" % (copy_dir, differ, src_dir))
        else:
            ok("%s/*.json are byte-identical to %s/*.json (%d dashboards)" % (copy_dir, src_dir, len(names)))
    if new_text != text:
        fail("%s: the configMapGenerator entries do not list %s (run scripts/check-k8s.sh --sync)" % (kust, names))
    else:
        ok("%s: one ConfigMap per dashboard (%s)" % (kust, ", ".join(names)))


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
     "secret-example": cmd_secret_example, "sync-rule": cmd_sync_rule,
     "dashboards": cmd_sync_dashboards}[cmd](args)
    if cmd != "sync-rule" and args[-1:] != ["sync"]:
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
  "$PY" "$py" dashboards "$DASHBOARDS" "$DASH_COMPONENT" sync
  say "synced $DASH_COMPONENT (dashboards/*.json and its configMapGenerator) from $DASHBOARDS"
fi

# ---------------------------------------------------------------- copies
say "generated copies"
if cmp -s "$SETTINGS" "$CM_COPY"; then
  pass "$CM_COPY is byte-identical to $SETTINGS (ConfigMap source)"
else
  flunk "$CM_COPY differs from $SETTINGS: the ConfigMap would not ship the production settings; run scripts/check-k8s.sh --sync"
fi
run_py dashboards "$DASHBOARDS" "$DASH_COMPONENT" check
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
  # Every optional component on top of the overlays it is meant for, in
  # every combination (a component whose patch target is missing is skipped
  # silently by kustomize; the consistency checks catch that). Labels are
  # overlay+component+...; kustomize wants relative paths.
  components_for_deployment=(grafana-dashboards ingress-from-nodes)
  components_for_daemonset=(grafana-dashboards ingress-from-nodes tolerations hostport)
  # Kubernetes >= 1.30 only: validated against the newest schemas only.
  newest_only_components=(prestop-sleep-action)
  known=" ${components_for_daemonset[*]} ${newest_only_components[*]} "
  for d in k8s/components/*/; do
    c=$(basename "$d")
    case $c in dev-redis) continue ;; esac  # part of the dev overlay
    [[ $known == *" $c "* ]] || flunk "k8s/components/$c is rendered by no combination: add it to scripts/check-k8s.sh"
  done
  render_combo() { # newest|both OVERLAY COMPONENT...
    local which=$1 overlay=$2; shift 2
    local label="k8s/overlays/$overlay" dir rel c
    for c in "$@"; do label+="+$c"; done
    dir=$work/combo-$((++combo_count))
    mkdir -p "$dir"
    rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$PWD/k8s" "$dir")
    {
      printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/overlays/%s\ncomponents:\n' "$rel" "$overlay"
      for c in "$@"; do printf '  - %s/components/%s\n' "$rel" "$c"; done
    } >"$dir/kustomization.yaml"
    if $renderer "$dir" >"$dir.yaml" 2>"$work/err"; then
      pass "$label renders"
      if [ "$which" = newest ]; then rendered_newest+=("$label=$dir.yaml"); else rendered+=("$label=$dir.yaml"); fi
    else
      flunk "$label does not render: $(cat "$work/err")"
    fi
  }
  combo_count=0
  for overlay in deployment daemonset; do
    if [ "$overlay" = deployment ]; then comps=("${components_for_deployment[@]}"); else comps=("${components_for_daemonset[@]}"); fi
    n=${#comps[@]}
    for ((mask = 1; mask < (1 << n); mask++)); do
      picked=()
      for ((i = 0; i < n; i++)); do (((mask >> i) & 1)) && picked+=("${comps[i]}"); done
      render_combo both "$overlay" "${picked[@]}"
    done
    for c in "${newest_only_components[@]}"; do render_combo newest "$overlay" "$c"; done
  done
  render_combo newest daemonset "${components_for_daemonset[@]}" "${newest_only_components[@]}"
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
  run_py consistency "$SETTINGS" "$alerts_arg" "$DASHBOARDS" "${rendered[@]}" "${rendered_newest[@]}"
else
  # Raw fallback: the base objects plus the deployment overlay's own files.
  bundle=$work/raw-bundle.yaml
  for f in k8s/base/*.yaml k8s/overlays/deployment/*.yaml; do
    case $f in */kustomization.yaml | */secret.example.yaml | "$CM_COPY") continue ;; esac
    printf -- '---\n' >>"$bundle"; cat "$f" >>"$bundle"
  done
  run_py consistency "$SETTINGS" "$alerts_arg" "$DASHBOARDS" "k8s/base and overlays/deployment (raw)=$bundle"
fi
kusts=()
while IFS= read -r f; do kusts+=("$f"); done < <(find k8s -name kustomization.yaml | LC_ALL=C sort)
run_py secret-example k8s/base/secret.example.yaml "${kusts[@]}"

echo "check-k8s: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
