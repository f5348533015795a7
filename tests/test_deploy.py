"""deploy/kubernetes and compose.yaml, validated offline: kustomize renders every overlay, every
resource passes Kubernetes' own schemas strictly (a kind with no schema fails), yamllint passes,
Envoy accepts the gateway file as Kubernetes mounts it and as `sam-triton cluster` rewrites it, and
the files agree with each other (names, ports, the metric, the drain timings)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML comes with the cluster extra")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate comes with the test extra")

from sam_triton.build.server import gateway as gw  # noqa: E402
from sam_triton.client.contract import ROUTE_HEADER  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent
#: The Kubernetes versions the manifests are validated against: a recent one and the newest schema shipped.
VERSIONS = ("1.33.0", kubernetes_validate.utils.latest_version())


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: it comes with the test extra (make setup installs it)")
    return str(path)


def render(folder: Path) -> List[Dict]:
    out = subprocess.run([tool("kubectl"), "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def strictly_valid(resource: Dict, version: str) -> None:
    """kubernetes-validate strict, with an unknown kind or apiVersion a failure (its CLI only warns)."""
    kubernetes_validate.validate(resource, version, strict=True)


def by_kind(resources: List[Dict]) -> Dict[str, Dict]:
    return {f"{r['kind']}/{r['metadata']['name']}": r for r in resources}


@pytest.fixture(scope="module")
def base() -> Dict[str, Dict]:
    return by_kind(render(DEPLOY / "base"))


@pytest.mark.parametrize("overlay", ["base", "overlays/cpu"])
@pytest.mark.parametrize("version", VERSIONS)
def test_every_resource_passes_kubernetes_schemas_strictly(overlay, version):
    resources = render(DEPLOY / overlay)
    assert len(resources) >= 9
    for resource in resources:
        strictly_valid(resource, version)


def test_the_validation_can_fail():
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "serviceName": "x", "template": {"spec": {"containers": [{"name": "x", "imag": "typo"}]}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        strictly_valid(statefulset, VERSIONS[0])
    (monitor,) = render(DEPLOY / "monitoring")
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # a CRD (the ServiceMonitor's kind) has no schema here
        strictly_valid(monitor, VERSIONS[0])


def test_yamllint():
    out = subprocess.run(
        [tool("yamllint"), "-c", str(ROOT / ".yamllint.yaml"), "--strict", "deploy", "compose.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_envoy_accepts_the_gateway_file_and_its_local_rewrite(tmp_path):
    assert "Deprecated field" not in gw.validate(gw.DEFAULT_CONFIG), "the gateway file uses a field Envoy will remove"
    config = gw.load(gw.DEFAULT_CONFIG)
    local = gw.local_config(
        config,
        [gw.Upstream("triton-0", "127.0.0.1", 1234), gw.Upstream("triton-2", "127.0.0.1", 1235)],
        host="127.0.0.1",
        port=1,
        admin_port=2,
    )
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(local))
    gw.validate(tmp_path / "local.yaml")
    assert gw.route_header(config) == ROUTE_HEADER  # what the client sends is what the gateway hashes
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    log_format = manager["access_log"][0]["typed_config"]["log_format"]["text_format_source"]["inline_string"]
    assert f"route=%REQ({ROUTE_HEADER.upper()})%" in log_format  # read_access_log's route key
    unchanged = ("lb_policy", "health_checks", "outlier_detection", "circuit_breakers", "common_lb_config")
    assert {k: local["static_resources"]["clusters"][0][k] for k in unchanged} == {
        k: config["static_resources"]["clusters"][0][k] for k in unchanged
    }
    with pytest.raises(gw.GatewayError, match="triton-9"):
        gw.local_config(config, [gw.Upstream("triton-9", "127.0.0.1", 1)], host="127.0.0.1", port=1, admin_port=2)


def test_the_files_agree(base):
    config = gw.load(gw.DEFAULT_CONFIG)
    configmap = next(r for name, r in base.items() if name.startswith("ConfigMap/sam-gateway"))
    assert configmap["data"]["envoy.yaml"] == gw.DEFAULT_CONFIG.read_text(), "the ConfigMap is not the gateway file"
    statefulset, service = base["StatefulSet/triton"], base["Service/triton-headless"]
    endpoints = gw._cluster(config)["load_assignment"]["endpoints"][0]["lb_endpoints"]
    names = gw.hash_keys(config)
    assert names == [f"{statefulset['metadata']['name']}-{i}" for i in range(len(names))], "hash keys are not the pods' names"
    for endpoint, name in zip(endpoints, names):
        address = endpoint["endpoint"]["address"]["socket_address"]
        assert address["address"] == f"{name}.{statefulset['spec']['serviceName']}"
        assert address["port_value"] == service["spec"]["ports"][0]["port"]
    hpa = base["HorizontalPodAutoscaler/triton"]
    assert hpa["spec"]["maxReplicas"] == len(names), "the HPA may scale past the endpoints the gateway knows"
    assert hpa["spec"]["scaleTargetRef"]["name"] == statefulset["metadata"]["name"]
    adapter = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-adapter-values.yaml").read_text())
    assert adapter["rules"]["custom"][0]["name"]["as"] == hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    pod = statefulset["spec"]["template"]["spec"]
    container = pod["containers"][0]
    exit_timeout = int(next(a for a in container["args"] if a.startswith("--exit-timeout-secs=")).split("=")[1])
    assert pod["terminationGracePeriodSeconds"] > container["lifecycle"]["preStop"]["sleep"]["seconds"] + exit_timeout
    assert pod["securityContext"]["runAsNonRoot"] and container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    monitor = yaml.safe_load((DEPLOY / "monitoring" / "servicemonitor.yaml").read_text())
    metrics = base["Service/triton-metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in metrics["spec"]["ports"]]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert "./deploy/kubernetes/base/gateway/envoy.yaml:/etc/envoy/envoy.yaml:ro" in compose["services"]["gateway"]["volumes"]
    aliases = [compose["services"][n]["networks"]["default"]["aliases"][0] for n in compose["services"] if n.startswith("triton-")]
    assert aliases == [e["endpoint"]["address"]["socket_address"]["address"] for e in endpoints[: len(aliases)]]


def test_the_cpu_overlay_runs_openvino_without_a_gpu():
    statefulset = by_kind(render(DEPLOY / "overlays" / "cpu"))["StatefulSet/triton"]
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert "--runtime=openvino" in container["args"]
    assert "nvidia.com/gpu" not in container["resources"].get("requests", {})
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
