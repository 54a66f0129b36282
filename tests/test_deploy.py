"""The deployment files, checked by real validators (no container engine or cluster runs here): the
compose file against the Compose specification, every Kubernetes manifest against the Kubernetes
schemas (each file as written, and each overlay as kustomize renders it), the Dockerfile with
hadolint, the scripts with shellcheck; every XMSEARCH_* name they use is a setting; the pieces refer
to each other by the right names (KEDA's scaler to the worker Deployment and the broker queue, the
Qdrant values to a cluster that survives a lost node)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from xmsearch.settings import Settings
from xmsearch.workers.app import QUEUE

DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent  # the validators are test dependencies, installed beside pytest
CRDS = {"keda.sh/v1alpha1"}  # custom resources: no Kubernetes schema; checked by their references below


def _run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _validate_kubernetes(path: Path) -> None:
    result = _run(BIN / "kubernetes-validate", "--strict", "--quiet", path)
    problems = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if "ERROR" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_the_compose_file_follows_the_compose_specification() -> None:
    result = _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("api", "worker", "intake"):  # what needs Qdrant and Redis waits until they are healthy
        assert services[name]["depends_on"] == {
            "qdrant": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert "--appendonly" in services["redis"]["command"]  # xmsearch refuses a broker that keeps nothing
    for name in ("qdrant", "redis", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["api"]["healthcheck"]["test"][1:] == ["xmsearch", "probe", "http://127.0.0.1:8000/ready"]


def test_a_broken_file_is_caught_by_the_validators(tmp_path: Path) -> None:
    """The validators do fail: a misspelled field, a wrong type."""
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  api:\n    image: x\n    restrat: always\n")
    assert _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", compose).returncode != 0
    api = _documents((KUBERNETES / "base" / "api.yaml").read_text())[0]
    api["spec"]["replicas"] = "two"
    broken = tmp_path / "api.yaml"
    broken.write_text(yaml.safe_dump(api))
    with pytest.raises(AssertionError):
        _validate_kubernetes(broken)


BASE = _documents((KUBERNETES / "base" / "kustomization.yaml").read_text())[0]
PATCHES = {patch["path"] for patch in BASE["patches"]}  # partial resources, merged into others


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (KUBERNETES / "base").glob("*.yaml") if p.name != "kustomization.yaml")
)
def test_each_kubernetes_file_as_written_follows_the_schemas(name: str, tmp_path: Path) -> None:
    path = KUBERNETES / "base" / name
    documents = _documents(path.read_text())
    if name == "kustomizeconfig.yaml":  # kustomize's own configuration, not a resource
        assert documents[0]["nameReference"]
        return
    if name in PATCHES:  # a patch is checked as part of what it is merged into (the rendered overlays)
        assert documents[0]["spec"]["template"]["spec"]["containers"]
        return
    core = [d for d in documents if d["apiVersion"] not in CRDS]
    if core:
        only_core = tmp_path / name
        only_core.write_text(yaml.safe_dump_all(core))
        _validate_kubernetes(only_core)


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_each_overlay_renders_with_kustomize_and_follows_the_schemas(overlay: str, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kustomize renders through `kubectl kustomize`, and no kubectl is on PATH (apt-get install kubectl)"
        )
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    shutil.copy(tree / "base" / "secrets.env.example", tree / "base" / "secrets.env")  # as a user fills it in
    result = _run(kubectl, "kustomize", tree / "overlays" / overlay)
    assert result.returncode == 0, result.stderr
    rendered = _documents(result.stdout)
    core = tmp_path / "rendered.yaml"
    core.write_text(yaml.safe_dump_all([d for d in rendered if d["apiVersion"] not in CRDS]))
    _validate_kubernetes(core)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for document in rendered:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
        assert document["metadata"].get("namespace") == "xmsearch" or document["kind"] in {"Namespace"}
    # KEDA scales the worker Deployment on the broker queue, with the generated Secret's password
    scaler = by_kind["ScaledObject"]["xmsearch-worker"]["spec"]
    assert scaler["scaleTargetRef"]["name"] in by_kind["Deployment"]
    [trigger] = scaler["triggers"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == QUEUE
    service, namespace = trigger["metadata"]["address"].split(":")[0].split(".")[:2]  # dialled from KEDA's namespace
    assert service in by_kind["Service"] and namespace == by_kind["Service"][service]["metadata"]["namespace"]
    auth = by_kind["TriggerAuthentication"][trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"][0]
    secret = by_kind["Secret"][auth["name"]]
    assert auth["key"] in secret["data"]
    # every xmsearch pod: settings, secrets, probes, an unprivileged user, requests
    for name in ("xmsearch-api", "xmsearch-worker", "xmsearch-intake"):
        pod = by_kind["Deployment"][name]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
        assert container["resources"]["requests"]
        assert container["envFrom"][0]["configMapRef"]["name"] in by_kind["ConfigMap"]
        for variable in container["env"]:
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            assert ref is None or ref["key"] in by_kind["Secret"][ref["name"]]["data"], variable
    api = by_kind["Deployment"]["xmsearch-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready" and api["livenessProbe"]["httpGet"]["path"] == "/health"
    budgets = by_kind["PodDisruptionBudget"].values()
    assert {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for b in budgets} == {"api", "worker"}
    worker = by_kind["Deployment"]["xmsearch-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert ("nvidia.com/gpu" in worker["resources"]["limits"]) == (overlay == "gpu")


def test_the_dockerfile_passes_hadolint() -> None:
    result = _run(BIN / "hadolint", DEPLOY / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.count("FROM ") == 2 and "USER 10001" in text  # multi-stage, not root
    assert 'CMD ["xmsearch", "serve"]' in text and '"xmsearch", "probe"' in text  # the entry commands the tests run


def test_the_scripts_pass_shellcheck() -> None:
    shells = [
        p for p in sorted((ROOT / "scripts").iterdir()) if p.read_text().startswith(("#!/usr/bin/env bash", "#!/bin/"))
    ]
    scripts = [ROOT / ".ci" / "run", *shells]
    assert len(scripts) >= 4  # .ci/run, bootstrap, test, demo
    result = _run(BIN / "shellcheck", *scripts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_xmsearch_name_in_deploy_is_a_setting() -> None:
    known = {f"XMSEARCH_{name.upper()}" for name in Settings.model_fields}
    used: dict[str, set[str]] = {}
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        for name in re.findall(r"XMSEARCH_[A-Z0-9_]+", path.read_text()):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    unknown = {name: sorted(paths) for name, paths in used.items() if name not in known}
    assert not unknown, f"not settings (misspelled, or gone): {unknown}"
    assert {"XMSEARCH_BROKER_URL", "XMSEARCH_QDRANT_URL", "XMSEARCH_QDRANT_SHARDS"} <= used.keys()


def test_the_qdrant_values_make_a_cluster_that_survives_a_lost_node() -> None:
    values = yaml.safe_load((DEPLOY / "qdrant" / "values.yaml").read_text())
    chart_keys = {  # the top-level values of Qdrant's chart (qdrant/qdrant-helm, chart 1.19) this file sets
        "replicaCount", "config", "apiKey", "persistence", "snapshotPersistence", "resources",
        "podDisruptionBudget", "topologySpreadConstraints",
    }  # fmt: skip
    assert set(values) <= chart_keys
    assert values["replicaCount"] >= 3 and values["config"]["cluster"]["enabled"] is True
    assert values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    assert values["apiKey"]["valueFrom"]["secretKeyRef"]["name"]
    settings = dict(line.split("=", 1) for line in BASE["configMapGenerator"][0]["literals"])
    assert int(settings["XMSEARCH_QDRANT_REPLICATION_FACTOR"]) >= 2  # each shard on two nodes
    assert int(settings["XMSEARCH_QDRANT_SHARDS"]) % values["replicaCount"] == 0  # shards spread evenly
