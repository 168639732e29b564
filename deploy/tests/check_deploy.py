#!/usr/bin/env python3
"""Checks for everything under deploy/: the Helm chart, the compose quickstart and the Dockerfile.

Why this exists: deployment files rot silently. A chart that renders is not a chart that works: the probes must hit
the admin port's real paths, the rendered config must be one the relay accepts, the pod must outlive the relay's
drain, and no secret may leak into a ConfigMap. Docker cannot build or run images on the project's machines, so
the chart is rendered with Helm's own engine (libhelm from the `helm-python-sdk` package: no helm binary, no
cluster), every rendered object is validated against the Kubernetes OpenAPI schemas (`kubernetes-validate`, strict:
unknown fields fail), and the relay binary itself judges every config (`trigger-relay check-config`). The
Dockerfile is checked statically; its health check script runs against a live relay.

    python3 deploy/tests/check_deploy.py [GROUP ...]     # groups: chart schema wiring isc config compose docker

TRIGGER_RELAY_BIN names the relay binary (tests/it/deploy.rs passes cargo's). Exit 0 when every check passes, 1 with
every failure listed otherwise, 2 when a tool is missing (the message says how to install it). Offline.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

INSTALL_HINT = (
    "install the Python packages the deploy checks need:\n"
    "    python3 -m pip install helm-python-sdk kubernetes-validate pyyaml jsonschema\n"
    "(add --break-system-packages if your system pip refuses; scripts/test installs them when missing)"
)

try:
    import tomllib  # Python 3.11+
except ImportError:  # pragma: no cover
    sys.exit("check_deploy: needs Python 3.11 or later (tomllib); install a newer python3")

try:
    import helm_python as helm
    import jsonschema  # noqa: F401  (kubernetes-validate's validator; imported to fail early with the hint)
    import kubernetes_validate.utils as kv_utils
    import yaml
except ImportError as e:  # pragma: no cover - exercised on machines without the packages
    print(f"check_deploy: missing Python package ({e}).\n{INSTALL_HINT}", file=sys.stderr)
    sys.exit(2)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/trigger-relay"
ALL_ON = CHART / "ci/all-on-values.yaml"
BAD_VALUES = ROOT / "deploy/tests/bad-values.yaml"
COMPOSE = ROOT / "deploy/compose.yaml"
DOCKERFILE = ROOT / "deploy/Dockerfile"

# The Kubernetes version the rendered objects are validated against: a current release that kubernetes-validate
# ships schemas for. Raise it when the package (and the clusters we target) move on.
KUBERNETES_VERSION = "1.35"
RELEASE = "relay"
NAMESPACE = "isc"
# Custom resources kubernetes-validate has no schema for; each is checked field by field below instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
ALERTS = ROOT / "deploy/prometheus/alerts.yaml"
DASHBOARD = ROOT / "deploy/grafana/trigger-relay.json"
VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Failures:
    """Collects every failed check, so one run reports them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.items.append(message)
        return ok


def relay_bin() -> str:
    b = os.environ.get("TRIGGER_RELAY_BIN")
    if not b or not Path(b).is_file():
        sys.exit(
            "check_deploy: set TRIGGER_RELAY_BIN to the trigger-relay binary "
            "(`cargo build`, then TRIGGER_RELAY_BIN=target/debug/trigger-relay); "
            "`cargo test --test it deploy::` does this for you"
        )
    return b


# --- rendering -----------------------------------------------------------------------------------------------------


def load_values(path: Path) -> dict[str, Any]:
    return helm.values_from_yaml(path.read_text())


def render(values: dict[str, Any] | None) -> tuple[list[dict[str, Any]], str]:
    """Render the chart like `helm install` would (offline); returns the objects and NOTES.txt."""
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    notes = ""
    for name, text in sorted(out.items()):
        if name.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("_template", name)
                objects.append(doc)
    return objects, notes


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {kind}, rendered {len(found)}")
    return found[0]


def relay_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "relay")


def isc_sync_pods(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The pod templates of the ISC sync Job and CronJob, each with a label naming its object."""
    out = [(f"Job/{j['metadata']['name']}", j["spec"]["template"]) for j in by_kind(objects, "Job")]
    out += [(f"CronJob/{c['metadata']['name']}", c["spec"]["jobTemplate"]["spec"]["template"])
            for c in by_kind(objects, "CronJob")]
    return out


def isc_container(template: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in template["spec"]["containers"] if c["name"] == "isc-sync")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector selects these labels (an empty selector selects everything)."""
    return all(labels.get(k) == v for k, v in selector.items())


def config_map(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap holding the relay's config (the Grafana dashboard, when enabled, is another ConfigMap)."""
    found = [c for c in by_kind(objects, "ConfigMap") if "config.toml" in (c.get("data") or {})]
    if len(found) != 1:
        raise AssertionError(f"expected exactly one ConfigMap with config.toml, rendered {len(found)}")
    return found[0]


def config_text(objects: list[dict[str, Any]]) -> str:
    return config_map(objects)["data"]["config.toml"]


def listen_port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


# The Triggers API with the file store: one replica, the file on a volume.
API_FILE_STORE: dict[str, Any] = {
    "replicaCount": 1,
    "api": {
        "enabled": True,
        "store": "file",
        "clients": [{"clientId": "automation", "clientSecretSha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                     "scopes": ["sp:scopes:all"]}],
    },
}

# The Triggers API with the kafka store: three replicas, the store on the config's Kafka cluster.
def api_kafka_store() -> dict[str, Any]:
    config = load_values(CHART / "values.yaml")["config"] + '\n[sinks.kafka.main]\nbootstrap_servers = "kafka.messaging:9092"\n'
    return {
        "replicaCount": 3,
        "config": config,
        "api": {"enabled": True, "store": "kafka", "kafka": {"cluster": "main"},
                "clients": API_FILE_STORE["api"]["clients"]},
        "secretEnv": {"ISC_BEARER_TOKEN": "isc-bearer-token", "TRIGGER_RELAY_STORE_KEY": "api-store-key",
                      "TRIGGER_RELAY_TOKEN_SIGNING_KEY": "api-token-signing-key"},
    }


# The ISC sync CronJob only (no hook Job), dry-run, its credentials in a Secret of its own, publicUrl given.
ISC_OWN_SECRET: dict[str, Any] = {
    "replicaCount": 1,
    "api": API_FILE_STORE["api"],
    "isc": {
        "enabled": True,
        "tenantUrl": "https://acme.api.identitynow.com/",
        "publicUrl": "https://relay.example.com/isc/",
        "secrets": {"existingSecret": "isc-credentials", "clientIdKey": "client-id", "clientSecretKey": "client-secret",
                    "relayApiTokenKey": "relay-token"},
        "sync": {"dryRun": True, "job": {"enabled": False}, "cronJob": {"enabled": True}},
    },
}

# The ISC sync Job on a relay without the Triggers API: `isc sync` reads the config file's subscriptions.
ISC_NO_API: dict[str, Any] = {
    "isc": {"enabled": True, "tenantUrl": "https://acme.api.identitynow.com", "publicUrl": "https://relay.example.com"},
}

SCENARIOS: dict[str, Callable[[], dict[str, Any] | None]] = {
    "default values": lambda: None,
    f"{ALL_ON.relative_to(ROOT)}": lambda: load_values(ALL_ON),
    "api with the file store": lambda: API_FILE_STORE,
    "api with the kafka store": api_kafka_store,
    "isc sync CronJob with its own Secret": lambda: ISC_OWN_SECRET,
    "isc sync Job without the Triggers API": lambda: ISC_NO_API,
}

# The ISC sync Job's config file and the variables the chart gives it from the isc Secret.
ISC_CONFIG = "/etc/trigger-relay/isc.toml"
ISC_SECRET_ENV = {"ISC_CLIENT_ID": "clientIdKey", "ISC_CLIENT_SECRET": "clientSecretKey",
                  "TRIGGER_RELAY_API_TOKEN": "relayApiTokenKey"}
# The [isc] keys of `trigger-relay isc`'s interface (src/isc/config.rs).
ISC_KEYS = {"tenant_url", "client_id", "client_secret", "public_url", "credential", "relay_api_url", "relay_api_token",
            "instance", "push_filters", "rate_limit_requests"}


# --- groups --------------------------------------------------------------------------------------------------------


def check_chart(f: Failures) -> None:
    """Lint (strict), render and validate every object against the Kubernetes schemas."""
    for label, values in SCENARIOS.items():
        report = helm.lint(CHART, values(), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBERNETES_VERSION}.0")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + [
            {"error": e} for e in report.get("errors", []) or []
        ]
        f.check(not problems, f"helm lint ({label}): {problems}")
        objects, notes = render(values())
        f.check(bool(objects), f"render ({label}): no objects")
        for o in objects:
            name = f"{o['kind']}/{o['metadata']['name']} ({o.pop('_template')}, {label})"
            if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS:
                continue
            try:
                kv_utils.validate(o, KUBERNETES_VERSION, strict=True)
            except kv_utils.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                f.check(False, f"{name}: invalid for Kubernetes {KUBERNETES_VERSION} at {path or '.'}: {e.message}")
            except kv_utils.SchemaNotFoundError as e:
                f.check(False, f"{name}: {e.message}; a kind the cluster does not have, or add it to CUSTOM_KINDS")
        f.check("/events/" in notes, f"NOTES.txt ({label}) does not tell the URL to give ISC:\n{notes}")
    # The chart README documents every value.
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    with helm.Chart.load(CHART) as chart:
        for path in value_paths(chart.values):
            f.check(any(path == d or path.startswith(d + ".") for d in documented),
                    f"deploy/helm/trigger-relay/README.md: value `{path}` is not in the values table")
    for d in documented:
        f.check(d.split(".")[0] in load_values(CHART / "values.yaml"), f"README documents `{d}`, which values.yaml lacks")
    # Every optional part must be present when turned on.
    objects, notes = render(SCENARIOS[str(ALL_ON.relative_to(ROOT))]())
    kinds = {o["kind"] for o in objects}
    want = {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Ingress", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy", "PrometheusRule", "Job", "CronJob"}
    f.check(want <= kinds, f"all-on values: missing kinds {sorted(want - kinds)}")
    f.check("https://relay.example.com/events/<triggerId>" in notes,
            f"NOTES.txt (all-on) should give https://relay.example.com/events/<triggerId>:\n{notes}")
    sm = one(objects, "ServiceMonitor")
    admin_svc = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"].endswith("-admin"))
    sel = sm["spec"]["selector"]["matchLabels"]
    f.check(all(admin_svc["metadata"]["labels"].get(k) == v for k, v in sel.items()),
            f"ServiceMonitor selector {sel} does not select the admin Service")
    f.check(sm["spec"]["endpoints"][0]["port"] == "admin" and sm["spec"]["endpoints"][0]["path"] == "/metrics",
            f"ServiceMonitor must scrape port admin, path /metrics: {sm['spec']['endpoints']}")
    check_monitoring_objects(f, objects, load_values(ALL_ON))
    sa = one(objects, "ServiceAccount")
    f.check("eks.amazonaws.com/role-arn" in sa["metadata"].get("annotations", {}), "ServiceAccount lost its IRSA annotation")
    hpa = one(objects, "HorizontalPodAutoscaler")
    f.check("replicas" not in one(objects, "Deployment")["spec"], "with an HPA the Deployment must not set replicas")
    f.check(hpa["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"], "HPA targets another Deployment")
    # Optional parts are off by default.
    defaults, _ = render(None)
    dk = {o["kind"] for o in defaults}
    off = {"Secret", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule",
           "Job", "CronJob"} & dk
    f.check(not off, f"default values render optional kinds: {sorted(off)}")
    f.check(len(by_kind(defaults, "ConfigMap")) == 1, "default values render the Grafana dashboard ConfigMap (it is optional)")


def check_monitoring_objects(f: Failures, objects: list[dict[str, Any]], values: dict[str, Any]) -> None:
    """The dashboard ConfigMap carries the sidecar's label and exactly deploy/grafana/trigger-relay.json; the
    PrometheusRule (a custom resource: checked field by field) carries exactly the groups of
    deploy/prometheus/alerts.yaml, in the release namespace, with the labels Prometheus selects on."""
    import json

    dashboards = [c for c in by_kind(objects, "ConfigMap") if "trigger-relay.json" in (c.get("data") or {})]
    if f.check(len(dashboards) == 1, f"all-on values: expected one dashboard ConfigMap, rendered {len(dashboards)}"):
        cm = dashboards[0]
        labels = cm["metadata"].get("labels", {})
        f.check(labels.get("grafana_dashboard") == "1",
                f"dashboard ConfigMap lacks the Grafana sidecar label grafana_dashboard: \"1\": {labels}")
        for k, v in (values["grafanaDashboard"].get("annotations") or {}).items():
            f.check(cm["metadata"].get("annotations", {}).get(k) == v, f"dashboard ConfigMap lacks annotation {k}: {v}")
        text = cm["data"]["trigger-relay.json"]
        try:
            shipped = json.loads(text)
            f.check(shipped == json.loads(DASHBOARD.read_text()),
                    f"the dashboard ConfigMap differs from {DASHBOARD.relative_to(ROOT)}")
        except json.JSONDecodeError as e:
            f.check(False, f"the dashboard ConfigMap's trigger-relay.json is not JSON: {e}")
        size = sum(len(v.encode()) for v in cm["data"].values())
        f.check(size < 1024 * 1024, f"the dashboard ConfigMap holds {size} bytes; Kubernetes allows 1 MiB")
        f.check(cm["metadata"]["namespace"] == NAMESPACE, f"dashboard ConfigMap in {cm['metadata']['namespace']}")
    rule = one(objects, "PrometheusRule")
    meta = rule["metadata"]
    f.check(meta.get("namespace") == NAMESPACE, f"PrometheusRule in namespace {meta.get('namespace')}, not {NAMESPACE}")
    for k, v in values["prometheusRule"]["labels"].items():
        f.check(meta.get("labels", {}).get(k) == v, f"PrometheusRule lacks label {k}: {v} (Prometheus selects on it)")
    f.check(set(rule) <= {"apiVersion", "kind", "metadata", "spec", "_template"} and set(rule["spec"]) == {"groups"},
            f"PrometheusRule: unexpected fields {sorted(set(rule) | set(rule['spec']))}")
    want = yaml.safe_load(ALERTS.read_text())["groups"]
    f.check(rule["spec"]["groups"] == want, f"the PrometheusRule's groups differ from {ALERTS.relative_to(ROOT)}")
    # The operator's CRD: each group has a name and rules; each rule is an alert or a record with an expr.
    allowed = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
    for g in rule["spec"]["groups"]:
        f.check(isinstance(g.get("name"), str) and isinstance(g.get("rules"), list), f"PrometheusRule group malformed: {g}")
        for r in g.get("rules", []):
            f.check(set(r) <= allowed and ("alert" in r) != ("record" in r) and isinstance(r.get("expr"), str),
                    f"PrometheusRule rule malformed: {r}")
            for k, v in {**r.get("labels", {}), **r.get("annotations", {})}.items():
                f.check(isinstance(v, str), f"PrometheusRule {r.get('alert')}: {k} must be a string (the CRD says so)")


def value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every leaf value (an empty map or list is a leaf)."""
    out = []
    for k, v in values.items():
        p = f"{prefix}.{k}" if prefix else k
        out += value_paths(v, p) if isinstance(v, dict) and v else [p]
    return out


def check_wiring(f: Failures) -> None:
    """Probes, ports, Services, Ingress, shutdown timing, checksum roll, NetworkPolicy."""
    for label, values in SCENARIOS.items():
        objects, _ = render(values())
        cfg = tomllib.loads(config_text(objects))
        c = relay_container(objects)
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        admin_port = listen_port(cfg["admin"]["listen"])
        ingress_port = listen_port(cfg["ingress"]["listen"])
        f.check(ports.get("admin") == admin_port,
                f"{label}: container port `admin` ({ports.get('admin')}) != config admin.listen port ({admin_port})")
        f.check(ports.get("ingress") == ingress_port,
                f"{label}: container port `ingress` ({ports.get('ingress')}) != config ingress.listen ({ingress_port})")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            got = c.get(probe, {}).get("httpGet", {})
            f.check(got.get("path") == path and got.get("port") in ("admin", admin_port),
                    f"{label}: {probe} must GET {path} on the admin port, got {got}")
        f.check(c["securityContext"].get("readOnlyRootFilesystem") is True, f"{label}: root filesystem not read-only")
        f.check(pod["securityContext"].get("runAsNonRoot") is True, f"{label}: pod may run as root")
        env = {e["name"]: e for e in c.get("env", [])}
        f.check(env.get("TRIGGER_RELAY_ADMIN_PORT", {}).get("value") == str(admin_port),
                f"{label}: TRIGGER_RELAY_ADMIN_PORT (image health check) != admin port")
        # Shutdown: the kubelet must not kill the relay before preStop + drain are over.
        grace_s = cfg.get("delivery", {}).get("shutdown_grace_ms", 20000) / 1000
        pre = c["lifecycle"]["preStop"]
        pause = float(pre["exec"]["command"][-1]) if "exec" in pre else float(pre["sleep"]["seconds"])
        f.check(pause > 0, f"{label}: preStop does not pause")
        tgps = pod["terminationGracePeriodSeconds"]
        f.check(tgps > pause + grace_s,
                f"{label}: terminationGracePeriodSeconds {tgps} must exceed preStop {pause}s + shutdown_grace_ms {grace_s}s")
        # Services reach the named container ports; the Ingress reaches the ingress Service and never the admin one.
        services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
        for s in services.values():
            for p in s["spec"]["ports"]:
                f.check(p["targetPort"] in ports, f"{label}: Service {s['metadata']['name']} targets unknown port {p['targetPort']}")
        admin_svcs = [n for n, s in services.items() if any(p["targetPort"] == "admin" for p in s["spec"]["ports"])]
        for ing in by_kind(objects, "Ingress"):
            for rule in ing["spec"]["rules"]:
                for p in rule["http"]["paths"]:
                    backend = p["backend"]["service"]["name"]
                    f.check(backend in services and backend not in admin_svcs,
                            f"{label}: Ingress path {p['path']} must go to the ingress Service, goes to {backend}")
                    f.check(p["path"].startswith("/events"), f"{label}: Ingress exposes {p['path']}, only /events belongs there")
        # NetworkPolicy: the admin port is open only to listed peers.
        for np in by_kind(objects, "NetworkPolicy"):
            for rule in np["spec"].get("ingress", []):
                rule_ports = [p.get("port") for p in rule.get("ports", [])]
                opens_admin = not rule_ports or "admin" in rule_ports or admin_port in rule_ports
                f.check(not opens_admin or bool(rule.get("from")),
                        f"{label}: NetworkPolicy opens the admin port to everyone: {rule}")
        # TLS: every file the config names is on a mounted Secret; probes and scrapes speak HTTPS to a TLS admin.
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        for listener in ("ingress", "admin"):
            tls = cfg.get(listener, {}).get("tls")
            if not tls:
                continue
            for key in ("cert_file", "key_file"):
                on_secret = any(tls[key].startswith(mounts[v] + "/") for v in secrets if v in mounts)
                f.check(on_secret, f"{label}: [{listener}.tls] {key} {tls[key]} is not on a mounted TLS Secret")
        admin_tls = bool(cfg.get("admin", {}).get("tls"))
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            scheme = c[probe]["httpGet"].get("scheme", "HTTP")
            f.check(scheme == ("HTTPS" if admin_tls else "HTTP"),
                    f"{label}: {probe} uses {scheme} while the admin listener is {'TLS' if admin_tls else 'plain'}")
        for sm in by_kind(objects, "ServiceMonitor"):
            ep = sm["spec"]["endpoints"][0]
            f.check(ep.get("scheme", "http") == ("https" if admin_tls else "http"),
                    f"{label}: ServiceMonitor scheme {ep.get('scheme')} does not match the admin listener")
    check_probes_live(f)
    defaults, _ = render(None)
    f.check(bool(by_kind(defaults, "NetworkPolicy")), "default values must render the NetworkPolicy (admin port closed)")
    # A config change rolls the pods: the checksum annotation follows the ConfigMap.
    base = load_values(ALL_ON)
    changed = dict(base, config=base["config"].replace('level = "info"', 'level = "debug"'))
    ann = lambda v: one(render(v)[0], "Deployment")["spec"]["template"]["metadata"]["annotations"]
    a, b = ann(base), ann(changed)
    f.check(a.get("checksum/config") and a["checksum/config"] != b.get("checksum/config"),
            "changing `config` must change the checksum/config pod annotation (so pods roll)")
    secret_changed = dict(base, secrets=dict(base["secrets"], data=dict(base["secrets"]["data"], **{"isc-bearer-token": "other"})))
    f.check(a.get("checksum/secret") != ann(secret_changed).get("checksum/secret"),
            "changing a chart-created secret must change the checksum/secret pod annotation")
    # The Triggers API: the shared store is rendered into the config; the chart refuses what cannot work.
    all_on = tomllib.loads(config_text(render(base)[0]))
    f.check(all_on.get("api", {}).get("store", {}).get("kind") == "nats"
            and all_on["api"]["store"]["connection"] in all_on.get("sinks", {}).get("nats", {}),
            f"all-on: [api.store] must be the nats store on its own connection: {all_on.get('api')}")
    file_objects, _ = render(API_FILE_STORE)
    file_pod = one(file_objects, "Deployment")["spec"]["template"]["spec"]
    store_dir = "/var/lib/trigger-relay"
    f.check(any(m["mountPath"] == store_dir for m in file_pod["containers"][0].get("volumeMounts", [])),
            f"api file store: {store_dir} must be a mounted volume (the root filesystem is read-only)")
    refusals = {
        "file store with 2 replicas": (dict(API_FILE_STORE, replicaCount=2), "serves one process"),
        "file store with autoscaling": (dict(API_FILE_STORE, autoscaling={"enabled": True}), "serves one process"),
        "nats store without servers": ({"api": {"enabled": True, "store": "nats"}}, "api.nats.servers"),
        "kafka store without a cluster": ({"api": {"enabled": True, "store": "kafka"}}, "api.kafka.cluster"),
        "nats store without the shared keys": (
            {"api": {"enabled": True, "store": "nats", "nats": {"servers": ["nats://n:4222"]}}}, "secretEnv.TRIGGER_RELAY_STORE_KEY"),
        "an [api] table in config as well": (
            dict(API_FILE_STORE, config=load_values(CHART / "values.yaml")["config"] + "\n[api]\nenabled = true\n"), "configure the API in values.api only"),
    }
    for what, (values, want) in refusals.items():
        try:
            render(values)
            f.check(False, f"{what}: the chart must refuse to render")
        except helm.HelmError as e:
            f.check(want in str(e), f"{what}: the error must say {want!r}, got: {e}")
    # The chart refuses a termination grace that does not cover preStop + drain.
    try:
        render({"shutdown": {"graceSeconds": 20, "preStopSleepSeconds": 5, "terminationGracePeriodSeconds": 25}})
        f.check(False, "terminationGracePeriodSeconds <= preStop + grace must fail to render")
    except helm.HelmError as e:
        f.check("terminationGracePeriodSeconds" in str(e), f"unexpected render error: {e}")


def check_isc(f: Failures) -> None:
    """The ISC sync hook Job and CronJob: hook annotations, schedule and limits as the values say; `isc sync` on the
    ConfigMap's isc.toml (config.toml plus [isc]); the Deployment's image, security contexts, service account and
    scheduling; credentials only from Secrets; pods no relay selector picks up, let in to the admin port by the
    NetworkPolicy; the relay pods accept the Job's API token and never get the tenant's OAuth client; the chart
    refuses what cannot work; nothing of it by default."""
    values = load_values(ALL_ON)
    isc = values["isc"]
    objects, _ = render(values)
    cm = config_map(objects)
    deploy = one(objects, "Deployment")
    deploy_pod = deploy["spec"]["template"]["spec"]
    relay = relay_container(objects)
    relay_env = {e["name"]: e for e in relay.get("env", [])}
    # The hook Job.
    job = one(objects, "Job")
    ann = job["metadata"].get("annotations", {})
    f.check(set(ann.get("helm.sh/hook", "").split(",")) == {"post-install", "post-upgrade", "post-rollback"},
            f"isc sync Job: helm.sh/hook must be post-install,post-upgrade,post-rollback: {ann}")
    f.check({"before-hook-creation", "hook-succeeded"} <= set(ann.get("helm.sh/hook-delete-policy", "").split(",")),
            f"isc sync Job: helm.sh/hook-delete-policy must be before-hook-creation,hook-succeeded: {ann}")
    for k in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        f.check(job["spec"].get(k) == isc["sync"]["job"][k], f"isc sync Job: {k} {job['spec'].get(k)} != isc.sync.job.{k}")
    # The CronJob: no hook, never two at once.
    cron = one(objects, "CronJob")
    cs, cv = cron["spec"], isc["sync"]["cronJob"]
    f.check("helm.sh/hook" not in cron["metadata"].get("annotations", {}), "isc sync CronJob must not be a Helm hook")
    f.check(cs.get("concurrencyPolicy") == "Forbid", f"isc sync CronJob: concurrencyPolicy {cs.get('concurrencyPolicy')}, not Forbid")
    for k in ("schedule", "timeZone", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        f.check(cs.get(k) == cv[k], f"isc sync CronJob: {k} {cs.get(k)!r} != isc.sync.cronJob.{k} {cv[k]!r}")
    # Exit 1 (config invalid, a change failed) is not retried; 3 (unreachable) is.
    for what, spec in ((f"Job/{job['metadata']['name']}", job["spec"]), ("CronJob's jobTemplate", cs["jobTemplate"]["spec"])):
        rules = spec.get("podFailurePolicy", {}).get("rules", [])
        fail = [r for r in rules if r["action"] == "FailJob" and "onExitCodes" in r]
        f.check(bool(fail) and fail[0]["onExitCodes"]["operator"] == "In" and 1 in fail[0]["onExitCodes"]["values"]
                and 3 not in fail[0]["onExitCodes"]["values"],
                f"{what}: podFailurePolicy must fail the Job on exit 1 and retry exit 3: {rules}")
    # The sync pods.
    cfg = tomllib.loads(cm["data"].get("isc.toml", ""))
    relay_cfg = tomllib.loads(config_text(objects))
    services = by_kind(objects, "Service")
    selectors = [(f"Service/{s['metadata']['name']}", s["spec"]["selector"]) for s in services]
    selectors += [("the Deployment", deploy["spec"]["selector"]["matchLabels"])]
    selectors += [(f"PodDisruptionBudget/{p['metadata']['name']}", p["spec"]["selector"]["matchLabels"])
                  for p in by_kind(objects, "PodDisruptionBudget")]
    selectors += [(f"NetworkPolicy/{n['metadata']['name']}", n["spec"]["podSelector"]["matchLabels"])
                  for n in by_kind(objects, "NetworkPolicy")]
    pods = isc_sync_pods(objects)
    secret_keys = {**load_values(CHART / "values.yaml")["isc"]["secrets"], **isc.get("secrets", {})}
    f.check(len(pods) == 2, f"all-on: expected the isc sync Job and CronJob, rendered {[w for w, _ in pods]}")
    for what, tpl in pods:
        pod, c = tpl["spec"], isc_container(tpl)
        want_args = ["isc", "sync"] + (["--dry-run"] if isc["sync"].get("dryRun") else []) + ["--config", ISC_CONFIG]
        f.check(c.get("args") == want_args, f"{what}: args {c.get('args')}, want {want_args}")
        env = {e["name"]: e for e in c.get("env", [])}
        f.check(env.get("TRIGGER_RELAY_CONFIG", {}).get("value") == ISC_CONFIG, f"{what}: TRIGGER_RELAY_CONFIG is not {ISC_CONFIG}")
        # The config: isc.toml of the relay's own ConfigMap, read-only.
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        cm_volumes = [v["name"] for v in pod.get("volumes", []) if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
        f.check(any(v in mounts and mounts[v]["mountPath"] == os.path.dirname(ISC_CONFIG) and mounts[v].get("readOnly")
                    for v in cm_volumes), f"{what}: the ConfigMap is not mounted read-only at {os.path.dirname(ISC_CONFIG)}")
        f.check(os.path.basename(ISC_CONFIG) in cm["data"], f"{what}: the ConfigMap has no {os.path.basename(ISC_CONFIG)}")
        # The Deployment's conventions.
        f.check(pod.get("restartPolicy") == "Never", f"{what}: restartPolicy {pod.get('restartPolicy')} (podFailurePolicy needs Never)")
        for k in ("image", "imagePullPolicy", "securityContext"):
            f.check(c.get(k) == relay.get(k), f"{what}: container {k} differs from the relay's: {c.get(k)} vs {relay.get(k)}")
        for k in ("securityContext", "serviceAccountName", "automountServiceAccountToken", "imagePullSecrets",
                  "nodeSelector", "tolerations", "affinity"):
            f.check(pod.get(k) == deploy_pod.get(k), f"{what}: pod {k} differs from the Deployment's: {pod.get(k)} vs {deploy_pod.get(k)}")
        f.check(c.get("resources") == isc["sync"]["resources"], f"{what}: resources {c.get('resources')} != isc.sync.resources")
        f.check(all(tpl["metadata"].get("annotations", {}).get(k) == v for k, v in isc["sync"]["podAnnotations"].items())
                and all(tpl["metadata"].get("labels", {}).get(k) == v for k, v in isc["sync"]["podLabels"].items()),
                f"{what}: isc.sync.podAnnotations / podLabels missing from the pod")
        # Credentials from the isc Secret (here the chart-created default one), never a value.
        for n, key in ISC_SECRET_ENV.items():
            ref = env.get(n, {}).get("valueFrom", {}).get("secretKeyRef", {})
            f.check(ref.get("name") == f"{RELEASE}-trigger-relay" and ref.get("key") == secret_keys[key]
                    and "value" not in env.get(n, {}), f"{what}: {n} must come from the isc Secret's key: {env.get(n)}")
        # The rest of the relay's config env, as the relay gets it (the command loads the whole file).
        for n, e in relay_env.items():
            if n != "TRIGGER_RELAY_ADMIN_PORT":
                f.check(env.get(n) == e, f"{what}: {n} differs from the relay container's: {env.get(n)} vs {e}")
        # No relay selector picks up a sync pod (a Service would send it ISC's events); the NetworkPolicy lets it
        # in to the admin port.
        labels = tpl["metadata"].get("labels", {})
        for sel_what, sel in selectors:
            f.check(not selects(sel, labels), f"{what}: {sel_what} selects the sync pods ({sel})")
        admin_port = listen_port(relay_cfg["admin"]["listen"])
        f.check(any(any(p.get("port") in ("admin", admin_port) for p in r.get("ports", []))
                    and any(selects(peer.get("podSelector", {}).get("matchLabels", {}), labels) and "namespaceSelector" not in peer
                            and "podSelector" in peer for peer in r.get("from", []))
                    for np in by_kind(objects, "NetworkPolicy") for r in np["spec"].get("ingress", [])),
                f"{what}: the NetworkPolicy does not let the sync pods reach the admin port")
    # The relay pods: the Job's API token, never the tenant's OAuth client.
    for n in ("ISC_CLIENT_ID", "ISC_CLIENT_SECRET"):
        f.check(n not in relay_env, f"the relay container gets {n}: only the sync Job needs the tenant's client")
    job_env = {e["name"]: e for e in isc_container(pods[0][1]).get("env", [])}
    f.check(relay_env.get("TRIGGER_RELAY_API_TOKEN") == job_env.get("TRIGGER_RELAY_API_TOKEN"),
            "the relay and the sync Job must read TRIGGER_RELAY_API_TOKEN from the same Secret key")
    tokens = [t for t in relay_cfg.get("api", {}).get("tokens", []) if t.get("token") == "${TRIGGER_RELAY_API_TOKEN}"]
    f.check(len(tokens) == 1 and all(sc.endswith(":read") for sc in tokens[0]["scopes"]),
            f"config.toml must give the sync Job one read-only [[api.tokens]] entry: {relay_cfg.get('api', {}).get('tokens')}")
    # isc.toml is config.toml plus [isc], which the interface knows and which points at this release.
    f.check("isc" not in relay_cfg, "config.toml has an [isc] table: the relay would need the tenant's client to load it")
    f.check({k: v for k, v in cfg.items() if k != "isc"} == relay_cfg, "isc.toml is not config.toml plus [isc]")
    t = cfg.get("isc", {})
    f.check(set(t) <= ISC_KEYS, f"[isc] has keys `trigger-relay isc` does not know: {sorted(set(t) - ISC_KEYS)}")
    admin_svc = next(s for s in services if s["metadata"]["name"].endswith("-admin"))
    scheme = "https" if relay_cfg["admin"].get("tls") else "http"
    want = {"tenant_url": isc["tenantUrl"], "public_url": "https://relay.example.com", "credential": isc["credential"],
            "instance": isc["instance"], "push_filters": isc["pushFilters"], "client_id": "${ISC_CLIENT_ID}",
            "client_secret": "${ISC_CLIENT_SECRET}", "relay_api_token": "${TRIGGER_RELAY_API_TOKEN}",
            "relay_api_url": f"{scheme}://{admin_svc['metadata']['name']}.{NAMESPACE}.svc:{admin_svc['spec']['ports'][0]['port']}"}
    for k, v in want.items():
        f.check(t.get(k) == v, f"[isc] {k} = {t.get(k)!r}, want {v!r}")
    # Its own Secret, CronJob only, dry-run.
    own, _ = render(ISC_OWN_SECRET)
    f.check(not by_kind(own, "Job") and len(by_kind(own, "CronJob")) == 1,
            f"isc.sync.job.enabled false: expected only the CronJob, rendered {[w for w, _ in isc_sync_pods(own)]}")
    for what, tpl in isc_sync_pods(own):
        c = isc_container(tpl)
        f.check("--dry-run" in c.get("args", []), f"isc.sync.dryRun: {what} args {c.get('args')} lack --dry-run")
        env = {e["name"]: e for e in c.get("env", [])}
        for n, key in ISC_SECRET_ENV.items():
            ref = env.get(n, {}).get("valueFrom", {}).get("secretKeyRef", {})
            f.check(ref == {"name": "isc-credentials", "key": ISC_OWN_SECRET["isc"]["secrets"][key]},
                    f"isc.secrets.existingSecret: {what} reads {n} from {ref}")
    own_t = tomllib.loads(config_map(own)["data"]["isc.toml"])["isc"]
    f.check(own_t.get("public_url") == "https://relay.example.com/isc" and own_t.get("tenant_url") == "https://acme.api.identitynow.com"
            and own_t.get("relay_api_url", "").startswith("http://"), f"isc.publicUrl / tenantUrl / relayApiUrl: {own_t}")
    # A long release name: the CronJob's name leaves room for the suffix of the Jobs it creates.
    long = render(dict(ISC_OWN_SECRET, fullnameOverride="r" * 63))[0]
    f.check(all(len(c["metadata"]["name"]) <= 52 for c in by_kind(long, "CronJob")), "the CronJob's name exceeds 52 characters")
    # isc on, both Jobs off: isc.toml still there (for `isc test`), no Job, no admin port opening.
    bare, _ = render(dict(ISC_OWN_SECRET, isc=dict(ISC_OWN_SECRET["isc"], sync={"cronJob": {"enabled": False}, "job": {"enabled": False}})))
    f.check("isc.toml" in config_map(bare)["data"] and not isc_sync_pods(bare), "isc.enabled without Jobs: want isc.toml and no Job")
    # Without the Triggers API: the config file's routes, so no relay API URL or token, and no admin port opening.
    no_api, _ = render(ISC_NO_API)
    na = tomllib.loads(config_map(no_api)["data"]["isc.toml"])
    f.check("relay_api_url" not in na["isc"] and "relay_api_token" not in na["isc"] and "api" not in na,
            f"isc without the Triggers API: [isc] must not name the relay's API: {na['isc']}")
    f.check("TRIGGER_RELAY_API_TOKEN" not in {e["name"] for e in relay_container(no_api).get("env", [])}
            | {e["name"] for _, t in isc_sync_pods(no_api) for e in isc_container(t).get("env", [])},
            "isc without the Triggers API: nothing needs TRIGGER_RELAY_API_TOKEN")
    f.check(len(isc_sync_pods(no_api)) == 1 and not any(
        "podSelector" in peer for np in by_kind(no_api, "NetworkPolicy") for r in np["spec"].get("ingress", [])
        for peer in r.get("from", [])), "isc without the Triggers API: one hook Job, and the admin port stays closed")
    # Nothing of it by default.
    defaults, _ = render(None)
    f.check(not isc_sync_pods(defaults), "default values render an isc sync Job or CronJob")
    f.check("isc.toml" not in config_map(defaults)["data"], "default values render isc.toml")
    f.check("TRIGGER_RELAY_API_TOKEN" not in {e["name"] for e in relay_container(defaults).get("env", [])},
            "default values give the relay TRIGGER_RELAY_API_TOKEN")
    f.check(not any("podSelector" in peer for np in by_kind(defaults, "NetworkPolicy") for r in np["spec"].get("ingress", [])
                    for peer in r.get("from", [])), "default values open the admin port to the sync pods")
    # What cannot work.
    base = dict(API_FILE_STORE, isc={"enabled": True, "tenantUrl": "https://acme.api.identitynow.com",
                                     "publicUrl": "https://relay.example.com"})
    refusals = {
        "no tenantUrl": (dict(base, isc={"enabled": True, "publicUrl": "https://relay.example.com"}), "tenantUrl"),
        "no publicUrl and no ingress": (dict(base, isc={"enabled": True, "tenantUrl": "https://acme.api.identitynow.com"}), "isc.publicUrl"),
        "an [isc] table in config as well": (
            dict(base, config=load_values(CHART / "values.yaml")["config"] + '\n[isc]\ninstance = "x"\n'), "values.isc only"),
        "ISC_CLIENT_SECRET in secretEnv": (
            dict(base, secretEnv={"ISC_BEARER_TOKEN": "isc-bearer-token", "ISC_CLIENT_SECRET": "x"}), "secretEnv.ISC_CLIENT_SECRET"),
        "a chart-created Secret without the isc keys": (
            dict(base, secrets={"create": True, "data": {"isc-bearer-token": "t"}}), "secrets.data does not have"),
    }
    for what, (vals, want_msg) in refusals.items():
        try:
            render(vals)
            f.check(False, f"isc: {what}: the chart must refuse to render")
        except helm.HelmError as e:
            f.check(want_msg in str(e), f"isc: {what}: the error must say {want_msg!r}, got: {e}")


def check_probes_live(f: Failures) -> None:
    """Run the relay on the rendered ConfigMap and hit what the kubelet would: each probe's path on the port it
    names, then an ISC event on the ingress port, then SIGTERM, which must end the relay within the pod's grace."""
    ingress, admin = free_port(), free_port()
    objects, _ = render({"ports": {"ingress": ingress, "admin": admin}})
    c = relay_container(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = {n: "dummy-token-0123456789abcdef0123456789" for n in env_vars_read(config_text(objects))}
    with LiveRelay(config_text(objects), env) as relay:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            port = ports.get(get["port"], get["port"])
            status = relay.get(port, get["path"], wait_for=200)
            exited = relay.proc.poll()
            f.check(status == 200, f"live relay: {probe} GET {get['path']} on port {get['port']} answered {status}, not 200"
                    + (f" (the relay exited with {exited}; its log:\n{relay.log.read_text()})" if exited is not None else ""))
        token = env.get("ISC_BEARER_TOKEN", "")
        req = urllib.request.Request(
            f"http://127.0.0.1:{ports['ingress']}/events/idn:identity-created", method="POST",
            data=b'{"identity":{"id":"x"},"_metadata":{"triggerId":"idn:identity-created","invocationId":"i-1"}}',
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        f.check(status == 200, f"live relay: an ISC event on the ingress port answered {status}, not 200")
        code, took, err = relay.stop()
        pre = float(c["lifecycle"]["preStop"]["exec"]["command"][-1])
        f.check(code == 0 and took < pod["terminationGracePeriodSeconds"] - pre,
                f"live relay: SIGTERM gave exit {code} after {took:.1f}s (grace {pod['terminationGracePeriodSeconds']}s):\n{err}")


def check_config(f: Failures) -> None:
    """The rendered config passes check-config, each ${VAR} comes from the pod env, and no secret is in a ConfigMap."""
    binary = relay_bin()
    for label, values in SCENARIOS.items():
        objects, _ = render(values())
        text = config_text(objects)
        env = {e["name"]: e for e in relay_container(objects).get("env", [])}
        names = env_vars_read(text)
        for n in names:
            f.check(n in env, f"{label}: the config reads ${{{n}}} but the container does not set {n}")
        vals = (values() or {})
        for n in (vals.get("secretEnv") or {"ISC_BEARER_TOKEN": "x"}):
            f.check("secretKeyRef" in env.get(n, {}).get("valueFrom", {}),
                    f"{label}: {n} is a secretEnv entry but is not read from a Secret: {env.get(n)}")
        run_check_config(f, binary, text, {n: f"dummy-{n.lower()}-0123456789abcdef0123456789" for n in names}, f"ConfigMap config.toml ({label})")
        # The ISC sync Job's config (config.toml plus [isc]): each ${VAR} from the sync pod's env, all the
        # credentials the chart adds from Secrets, and check-config passes on it.
        isc_text = config_map(objects)["data"].get("isc.toml")
        if isc_text is not None:
            isc_names = env_vars_read(isc_text)
            for what, tpl in isc_sync_pods(objects):
                sync_env = {e["name"]: e for e in isc_container(tpl).get("env", [])}
                for n in isc_names:
                    f.check(n in sync_env, f"{label}: isc.toml reads ${{{n}}} but {what} does not set {n}")
                for n in {"ISC_CLIENT_ID", "ISC_CLIENT_SECRET"} | (set(ISC_SECRET_ENV) & set(isc_names)):
                    f.check("secretKeyRef" in sync_env.get(n, {}).get("valueFrom", {}),
                            f"{label}: {what} must read {n} from a Secret: {sync_env.get(n)}")
            run_check_config(f, binary, isc_text,
                             {n: f"dummy-{n.lower()}-0123456789abcdef0123456789" for n in isc_names},
                             f"ConfigMap isc.toml ({label})")
        # No Secret value in a ConfigMap (neither the raw value nor its base64).
        secrets = []
        for s in by_kind(objects, "Secret"):
            secrets += [base64.b64decode(v).decode() for v in (s.get("data") or {}).values()]
            secrets += list((s.get("stringData") or {}).values())
        secrets += list(((vals.get("secrets") or {}).get("data") or {}).values())
        for cm in by_kind(objects, "ConfigMap"):
            blob = yaml.safe_dump(cm)
            for v in secrets:
                f.check(v not in blob and base64.b64encode(v.encode()).decode() not in blob,
                        f"{label}: a Secret value appears in ConfigMap {cm['metadata']['name']}")
        for o in objects:
            if o["kind"] != "Secret":
                blob = yaml.safe_dump(o)
                f.check("SECRET-MARKER" not in blob, f"{label}: a secret marker leaked into {o['kind']}/{o['metadata']['name']}")
    f.check(bool(load_values(ALL_ON)["secrets"]["data"]), "all-on values must carry secret markers to look for")


def env_vars_read(toml_text: str) -> list[str]:
    """The ${NAME}s a config reads (comment lines left out: `#` inside strings is not a concern for these files)."""
    live = "\n".join(line for line in toml_text.splitlines() if not line.lstrip().startswith("#"))
    return sorted(set(VAR_RE.findall(live)))


def run_check_config(f: Failures, binary: str, text: str, env: dict[str, str], label: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as tmp:
        tmp.write(text)
    try:
        full_env = {k: v for k, v in os.environ.items() if k != "TRIGGER_RELAY_CONFIG"} | env
        r = subprocess.run([binary, "check-config", "--config", tmp.name], env=full_env,
                           capture_output=True, text=True, timeout=60)
        f.check(r.returncode == 0, f"{label}: `trigger-relay check-config` failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")
    finally:
        os.unlink(tmp.name)


def check_schema(f: Failures) -> None:
    """values.schema.json accepts the shipped values and rejects the bad ones, each error named."""
    with helm.Chart.load(CHART) as chart:
        for label, values in SCENARIOS.items():
            try:
                chart.validate_schema(values())
            except helm.HelmError as e:
                f.check(False, f"schema rejects {label}: {e}")
        bad = load_values(BAD_VALUES)
        try:
            chart.validate_schema(bad)
            f.check(False, f"{BAD_VALUES.relative_to(ROOT)} passed the values schema; it must be rejected")
        except helm.HelmValuesError as e:
            msg = str(e)
            for needle in ("'replicas' not allowed", "/replicaCount", "/service/type", "/secretEnv/KAFKA_PASSWORD"):
                f.check(needle in msg, f"schema error for {BAD_VALUES.name} does not mention {needle!r}:\n{msg}")
        for key, wrong in (("replicaCount", "2"), ("ports", {"ingress": "8080", "admin": 9090}), ("config", 3),
                           ("networkPolicy", {"enabled": "yes"}), ("shutdown", {"graceSeconds": 1.5}),
                           ("isc", {"enabled": "yes"}), ("isc", {"tenantURL": "https://acme.api.identitynow.com"}),
                           ("isc", {"credential": "token"}), ("isc", {"tenantUrl": "http://acme.api.identitynow.com"}),
                           ("isc", {"instance": "two words"}), ("isc", {"enabled": True, "tenantUrl": ""}),
                           ("isc", {"sync": {"dryRun": "no"}}), ("isc", {"sync": {"job": {"backoffLimit": -1}}}),
                           ("isc", {"sync": {"cronJob": {"schedule": 5}}}),
                           ("isc", {"sync": {"cronJob": {"concurrencyPolicy": "Allow"}}}),
                           ("isc", {"secrets": {"clientSecret": "inline-secret"}})):
            try:
                chart.validate_schema({key: wrong})
                f.check(False, f"values schema accepts {key}={wrong!r}")
            except helm.HelmValuesError:
                pass
    try:
        render(load_values(BAD_VALUES))
        f.check(False, "rendering with bad values must fail (Helm validates the schema at install)")
    except helm.HelmValuesError:
        pass


def check_compose(f: Failures) -> None:
    """compose.yaml parses, wires every sink, and its relay config passes check-config with the compose env."""
    binary = relay_bin()
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc.get("services", {})
    for s in ("relay", "nats", "kafka", "moto"):
        f.check(s in services, f"compose.yaml: service {s!r} missing")
    f.check("--jetstream" in services.get("nats", {}).get("command", []), "compose.yaml: nats must run with --jetstream")
    relay = services.get("relay", {})
    env = {k: str(v) for k, v in (relay.get("environment") or {}).items()}
    # Compose interpolation: ${NAME:-default} takes the default when NAME is unset.
    env = {k: re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", v) for k, v in env.items()}
    cfg_path = env.get("TRIGGER_RELAY_CONFIG", "")
    mounts = [v.split(":") for v in relay.get("volumes", []) if isinstance(v, str)]
    host = next((m[0] for m in mounts if len(m) >= 2 and m[1] == cfg_path), None)
    if not f.check(host is not None, f"compose.yaml: nothing is mounted at TRIGGER_RELAY_CONFIG ({cfg_path})"):
        return
    cfg_file = (COMPOSE.parent / host).resolve()
    text = cfg_file.read_text()
    for n in env_vars_read(text):
        f.check(n in env, f"compose.yaml: {cfg_file.name} reads ${{{n}}}, which the relay service does not set")
    run_check_config(f, binary, text, env, str(cfg_file.relative_to(ROOT)))
    cfg = tomllib.loads(text)
    kinds = {s["type"] for s in cfg.get("subscriptions", [])}
    f.check({"KAFKA", "NATS", "EVENTBRIDGE"} <= kinds,
            f"{cfg_file.name}: wires {sorted(kinds)}, needs KAFKA, NATS and EVENTBRIDGE")
    f.check(any(s.get("natsConfig", {}).get("jetstream") for s in cfg.get("subscriptions", [])),
            f"{cfg_file.name}: no JetStream subscription")
    f.check(any("moto" in s.get("eventBridgeConfig", {}).get("endpointUrl", "") for s in cfg.get("subscriptions", [])),
            f"{cfg_file.name}: the EventBridge subscription does not go to the compose moto service")
    ports = {listen_port(cfg["ingress"]["listen"]), listen_port(cfg["admin"]["listen"])}
    published = {int(p.rsplit(":", 1)[1]) for p in relay.get("ports", [])}
    f.check(ports <= published, f"compose.yaml: relay listens on {sorted(ports)} but publishes {sorted(published)}")
    for dep in ("kafka", "moto"):
        f.check(dep in (relay.get("depends_on") or {}), f"compose.yaml: relay does not wait for {dep}")
    # The image's own default config.
    image_cfg = ROOT / "deploy/container.toml"
    run_check_config(f, binary, image_cfg.read_text(), {"ISC_BEARER_TOKEN": "dummy-token-0123456789abcdef0123456789"}, "deploy/container.toml")


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def check_docker(f: Failures) -> None:
    """Static checks of deploy/Dockerfile, and its health check script against a live relay."""
    ins = dockerfile_instructions()
    get = lambda k: [r for w, r in ins if w == k]
    froms = get("FROM")
    f.check(len(froms) >= 2 and any(" AS builder" in x for x in froms), f"Dockerfile: not multi-stage: {froms}")
    f.check(any("slim" in x or "distroless" in x for x in froms[-1:]), f"Dockerfile: runtime is not a small image: {froms[-1:]}")
    stages: list[list[tuple[str, str]]] = []
    for w, r in ins:
        if w == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((w, r))
    runs = lambda stage: " ".join(r for w, r in stage if w == "RUN")
    for pkg in ("make", "pkg-config", "libssl-dev", "zlib1g-dev", "build-essential"):
        f.check(pkg in runs(stages[0]), f"Dockerfile: builder lacks {pkg} (rdkafka-sys needs it)")
    for pkg in ("ca-certificates", "libssl3", "zlib1g"):
        f.check(re.search(rf"\b{pkg}\b(?!-dev)", runs(stages[-1])) is not None, f"Dockerfile: runtime lacks {pkg}")
    f.check("-dev" not in runs(stages[-1]), "Dockerfile: the runtime stage installs -dev packages")
    users = get("USER")
    f.check(bool(users) and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0",
            f"Dockerfile: the final USER must be a numeric non-root uid, got {users}")
    exposed = {p for e in get("EXPOSE") for p in e.split()}
    f.check({"8080", "9090"} <= exposed, f"Dockerfile: EXPOSE must list 8080 and 9090, got {exposed}")
    f.check(get("STOPSIGNAL") == ["SIGTERM"], f"Dockerfile: STOPSIGNAL SIGTERM missing: {get('STOPSIGNAL')}")
    hc = " ".join(get("HEALTHCHECK"))
    f.check("trigger-relay-healthcheck" in hc, f"Dockerfile: HEALTHCHECK must run the admin-port check: {hc}")
    for k in ("ENV", "ARG", "LABEL"):
        for v in get(k):
            f.check(not re.search(r"(?i)(token|password|secret|api_?key)\s*=", v), f"Dockerfile: a secret baked in: {k} {v}")
    for w, r in ins:
        if w == "COPY" and "--from" not in r:
            for src in shlex.split(r)[:-1]:
                f.check((ROOT / src).exists(), f"Dockerfile: COPY {src}: no such path in the repository")
    ignore = (ROOT / "deploy/Dockerfile.dockerignore").read_text()
    for w, r in ins:
        if w == "COPY" and "--from" not in r:
            for src in shlex.split(r)[:-1]:
                f.check(f"!{src.rstrip('/').removeprefix('./')}" in ignore.replace("/\n", "\n"),
                        f"deploy/Dockerfile.dockerignore excludes {src}, which the Dockerfile copies")
    entry = get("ENTRYPOINT")
    f.check(entry == ['["/usr/local/bin/trigger-relay"]'], f"Dockerfile: ENTRYPOINT must be the relay (exec form): {entry}")
    # The health check script: 0 against a live relay, non-zero once it is gone.
    script = ROOT / "deploy/healthcheck.sh"
    ingress, admin = free_port(), free_port()
    cfg = (f'[ingress]\nlisten = "127.0.0.1:{ingress}"\n[ingress.auth]\nnone = true\n'
           f'[admin]\nlisten = "127.0.0.1:{admin}"\n[log]\nformat = "json"\nlevel = "warn"\n')
    hc = lambda port: subprocess.run(["bash", str(script)], env=dict(os.environ, TRIGGER_RELAY_ADMIN_PORT=str(port)),
                                     capture_output=True, text=True, timeout=10)
    with LiveRelay(cfg, {}) as relay:
        if not f.check(relay.get(admin, "/healthz", wait_for=200) == 200, "relay did not come up for the health check test"):
            return
        r = hc(admin)
        f.check(r.returncode == 0, f"deploy/healthcheck.sh failed against a healthy relay: exit {r.returncode} {r.stderr}")
        r = hc(ingress)
        f.check(r.returncode != 0, "deploy/healthcheck.sh passed against the ingress port (no /healthz 200 there)")
    r = hc(admin)
    f.check(r.returncode != 0, "deploy/healthcheck.sh passed with no relay running")


class LiveRelay:
    """The relay binary running a config on the side, stopped with SIGTERM on exit."""

    def __init__(self, config: str, env: dict[str, str]) -> None:
        self.dir = tempfile.TemporaryDirectory()
        path = Path(self.dir.name) / "config.toml"
        path.write_text(config)
        full_env = {k: v for k, v in os.environ.items() if k != "TRIGGER_RELAY_CONFIG"} | env
        # Logs go to a file, not a pipe nobody reads while the relay runs.
        self.log = Path(self.dir.name) / "relay.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([relay_bin(), "--config", str(path)], env=full_env,
                                         stdout=subprocess.DEVNULL, stderr=log)

    def get(self, port: int, path: str, wait_for: int | None = None, timeout_s: float = 30) -> int:
        """GET http://127.0.0.1:port/path; with wait_for, retry until that status (or time out)."""
        deadline = time.monotonic() + timeout_s
        status = 0
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                status = 0
            if wait_for is None and status or status == wait_for or time.monotonic() > deadline or self.proc.poll() is not None:
                return status
            time.sleep(0.1)

    def stop(self) -> tuple[int | None, float, str]:
        """SIGTERM; returns (exit code or None when it had to be killed, seconds taken, stderr)."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        took = time.monotonic() - t0
        err = self.log.read_text()
        self.dir.cleanup()
        return code, took, err

    def __enter__(self) -> "LiveRelay":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GROUPS: dict[str, Callable[[Failures], None]] = {
    "chart": check_chart,
    "schema": check_schema,
    "wiring": check_wiring,
    "isc": check_isc,
    "config": check_config,
    "compose": check_compose,
    "docker": check_docker,
}


def main(argv: list[str]) -> int:
    names = argv or list(GROUPS)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        print(f"check_deploy: unknown group(s) {unknown}; choose from {list(GROUPS)}", file=sys.stderr)
        return 2
    helm.disable_logging()
    failed = 0
    for n in names:
        f = Failures()
        try:
            GROUPS[n](f)
        except Exception as e:  # a crash in a check is a failure with its cause, not a traceback-only exit
            import traceback
            f.items.append(f"crashed: {e!r}\n{traceback.format_exc()}")
        if f.items:
            failed += 1
            print(f"FAIL {n}: {len(f.items)} problem(s)")
            for item in f.items:
                print("  - " + item.replace("\n", "\n    "))
        else:
            print(f"ok   {n}")
    print(f"{len(names) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
