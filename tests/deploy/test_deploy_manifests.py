"""The Kubernetes manifests, checked without a cluster.

Every overlay under deploy/k8s/overlays is rendered with the real ``kubectl kustomize`` (v1.33, fetched
by deploy/tools/fetch_kubectl.py into .cache/tools/), every object is validated against the Kubernetes
1.33 API schemas (``kubernetes-validate``, strict: unknown fields fail), and the rules this project
keeps are checked: env names are Settings fields, every container has probes, resources and a hardened
securityContext, images are pinned, Services and PDBs/HPAs select what exists, the GPU and CPU Triton
variants are what they say. Skips (with the reason) only when kubectl cannot be fetched (offline) or a
checking library is not installed.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
# one-machine overlays: development Secrets generated in the overlay, one replica each (podman is local's,
# with stand-ins for the images only a registry has: tests/images plays it)
SINGLE_HOST = {"local", "podman"}
K8S_VERSION = "1.33.0"

SETTINGS_ENV = {f"HPE3D_{f.name.upper()}" for f in dataclasses.fields(Settings)}
# Variables that are not hpe3d settings but are expected: third-party images' own settings.
OTHER_ENV = re.compile(r"^(AWS_[A-Z_]+|MINIO_[A-Z_]+|PYTRITON_HOME|HOME)$")
STAGES = {"decoder": ("Decoder", 50051), "pose2d": ("Pose2D", 50052),
          "lifter3d": ("Lifter3D", 50053), "renderer": ("Renderer", 50054)}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install -r requirements.txt)")


def _load_fetcher():
    spec = importlib.util.spec_from_file_location("fetch_kubectl", ROOT / "deploy" / "tools" / "fetch_kubectl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kubectl() -> Path:
    fetcher = _load_fetcher()
    try:
        return fetcher.fetch()
    except fetcher.FetchError as exc:
        pytest.skip(f"kubectl could not be fetched (offline?): {exc}")


@pytest.fixture(scope="module")
def rendered(kubectl) -> dict[str, list[dict]]:
    out = {}
    for overlay in OVERLAYS:
        run = subprocess.run([str(kubectl), "kustomize", str(K8S / "overlays" / overlay)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"kustomize {overlay} failed:\n{run.stderr}"
        out[overlay] = [doc for doc in yaml.safe_load_all(run.stdout) if doc]
    return out


# -- helpers ------------------------------------------------------------------------------------
def _name(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in WORKLOAD_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def _pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"].get("labels", {})


def _workloads(objs: list[dict]):
    for obj in objs:
        spec = _pod_spec(obj)
        if spec is not None:
            yield obj, spec


def _containers(spec: dict, init: bool = True):
    yield from spec.get("containers", [])
    if init:
        yield from spec.get("initContainers", [])


def _find(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert found, f"{kind}/{name} missing"
    return found[0]


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(params=OVERLAYS)
def overlay(request, rendered) -> tuple[str, list[dict]]:
    return request.param, rendered[request.param]


# -- rendering and schemas ----------------------------------------------------------------------
def test_overlays_exist():
    assert {"local", "gpu"} <= set(OVERLAYS)


def test_overlay_renders_the_whole_system(overlay):
    name, objs = overlay
    names = {_name(o) for o in objs}
    for workload in ("decoder", "pose2d", "lifter3d", "renderer", "gateway", "triton"):
        assert f"Deployment/{workload}" in names and f"Service/{workload}" in names, f"{name}: {workload}"
    assert {"Namespace/hpe3d", "ConfigMap/hpe3d-config", "StatefulSet/minio", "Service/minio",
            "StatefulSet/nats", "Service/nats", "Deployment/worker", "PodDisruptionBudget/worker",
            "Ingress/gateway", "Job/minio-bucket"} <= names
    for stage in ("decoder", "pose2d", "renderer"):
        assert f"HorizontalPodAutoscaler/{stage}" in names
    assert all(o["metadata"].get("namespace") == "hpe3d" for o in objs if o["kind"] != "Namespace")


def test_objects_match_kubernetes_schemas(overlay):
    kv = pytest.importorskip("kubernetes_validate",
                             reason="kubernetes-validate is not installed (pip install -r requirements.txt)")
    name, objs = overlay
    errors = []
    for obj in objs:
        try:
            kv.validate(obj, K8S_VERSION, strict=True)
        except kv.ValidationError as exc:
            errors.append(f"{_name(obj)}: {exc.message} at {'/'.join(map(str, exc.path))}")
    assert not errors, f"{name}:\n" + "\n".join(errors)


def test_every_component_is_used_by_an_overlay():
    used = set()
    for overlay in OVERLAYS:
        kust = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
        used |= {Path(c).name for c in kust.get("components", [])}
    assert {p.name for p in (K8S / "components").iterdir() if p.is_dir()} <= used


def test_example_secret_is_not_rendered(overlay):
    name, objs = overlay
    for obj in objs:
        if obj["kind"] == "Secret":
            assert name in SINGLE_HOST, f"{name} ships a Secret; production Secrets are created by the operator"


# -- configuration ------------------------------------------------------------------------------
def test_config_keys_are_settings(overlay):
    name, objs = overlay
    config = _find(objs, "ConfigMap", "hpe3d-config")
    unknown = set(config["data"]) - SETTINGS_ENV
    assert not unknown, f"{name}: ConfigMap keys that no Settings field reads: {sorted(unknown)}"
    settings_defaults = Settings()
    for key, value in config["data"].items():  # every value parses as its Settings field would
        field = key.removeprefix("HPE3D_").lower()
        default = getattr(settings_defaults, field)
        if isinstance(default, bool):
            assert value in ("true", "false"), f"{key}={value!r}"
        elif isinstance(default, (int, float)):
            type(default)(value)


def test_env_names_are_settings(overlay):
    name, objs = overlay
    for obj, spec in _workloads(objs):
        for container in _containers(spec):
            for env in container.get("env", []):
                ok = env["name"] in SETTINGS_ENV or OTHER_ENV.match(env["name"])
                assert ok, f"{name} {_name(obj)}/{container['name']}: env {env['name']} is not a Settings field"
            for source in container.get("envFrom", []):
                assert source.get("configMapRef", {}).get("name") == "hpe3d-config", source


def test_stage_addresses_point_at_services(overlay):
    name, objs = overlay
    data = _find(objs, "ConfigMap", "hpe3d-config")["data"]
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    for key in ("HPE3D_DECODER_ADDR", "HPE3D_POSE2D_ADDR", "HPE3D_LIFTER3D_ADDR", "HPE3D_RENDERER_ADDR",
                "HPE3D_TRITON_URL", "HPE3D_S3_ENDPOINT"):
        host, port = data[key].rsplit(":", 1)
        host = host.split(".")[0]
        assert host in services, f"{name}: {key}={data[key]} names no Service"
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, f"{name}: {key} port"
    scheme, _, address = data["HPE3D_NATS_URL"].partition("://")
    host, port = address.rsplit(":", 1)
    assert scheme == "nats" and host in services, f"{name}: HPE3D_NATS_URL={data['HPE3D_NATS_URL']}"
    assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, f"{name}: HPE3D_NATS_URL port"


SECRET_KEYS = {"hpe3d-s3": {"access-key", "secret-key"}, "hpe3d-stage-token": {"token"}}


def _secret_base_name(name: str, secrets: dict) -> str:
    """The Secret's name without the hash suffix a generator adds (local overlay)."""
    if secrets:
        assert name in secrets, f"Secret {name} is referenced but not rendered"
    return next((base for base in SECRET_KEYS if name == base or name.startswith(base + "-")), name)


def test_secret_references_are_the_s3_and_stage_token_secrets(overlay):
    name, objs = overlay
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    for obj, spec in _workloads(objs):
        for container in _containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                base = _secret_base_name(ref["name"], secrets)
                assert base in SECRET_KEYS and ref["key"] in SECRET_KEYS[base], f"{_name(obj)}: {ref}"
                if secrets:  # local generates them (names with hash suffix); elsewhere the operator creates them
                    assert set(secrets[ref["name"]]["data"]) == SECRET_KEYS[base], f"{name}: {ref['name']}"
                else:
                    assert ref["name"] == base, f"{_name(obj)}: {ref}"


def test_stage_token_reaches_every_stage_and_every_caller(overlay):
    """Every stage requires the token, and whoever calls a stage (the workers; the API probes uploads)
    sends it; it always comes from the Secret, never from a literal value."""
    name, objs = overlay
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    for workload in (*STAGES, "worker", "gateway"):
        container = _find(objs, "Deployment", workload)["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        assert "HPE3D_STAGE_TOKEN" in env, f"{name} {workload}: no HPE3D_STAGE_TOKEN"
        ref = env["HPE3D_STAGE_TOKEN"].get("valueFrom", {}).get("secretKeyRef", {})
        assert _secret_base_name(ref.get("name", ""), secrets) == "hpe3d-stage-token" and ref["key"] == "token", \
            f"{name} {workload}: HPE3D_STAGE_TOKEN must come from Secret hpe3d-stage-token"
    assert "HPE3D_STAGE_TOKEN" not in _find(objs, "ConfigMap", "hpe3d-config")["data"]


def test_servers_listen_on_the_pod_ip(overlay):
    """Servers bind 127.0.0.1 unless told otherwise; in pods they must listen on the pod IP."""
    name, objs = overlay
    assert _find(objs, "ConfigMap", "hpe3d-config")["data"]["HPE3D_BIND_HOST"] == "0.0.0.0", name
    for obj, spec in _workloads(objs):
        for container in _containers(spec):
            for env in container.get("env", []):
                assert env["name"] != "HPE3D_BIND_HOST", f"{name} {_name(obj)}: set it once, in the ConfigMap"


# -- hardening ----------------------------------------------------------------------------------
def test_containers_have_probes_resources_and_security(overlay):
    name, objs = overlay
    for obj, spec in _workloads(objs):
        where = f"{name} {_name(obj)}"
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True and pod_sc.get("runAsUser", 0) > 0, f"{where}: pod not non-root"
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, f"{where}: mounts an API token"
        for container in _containers(spec):
            cwhere = f"{where}/{container['name']}"
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{cwhere}: {part} incomplete"
            sc = container.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, cwhere
            assert sc.get("readOnlyRootFilesystem") is True, cwhere
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], cwhere
        if obj["kind"] != "Job":
            for container in spec["containers"]:
                assert "readinessProbe" in container and "livenessProbe" in container, \
                    f"{where}/{container['name']}: readiness and liveness probes required"


def test_images_are_pinned(overlay):
    name, objs = overlay
    for obj, spec in _workloads(objs):
        for container in _containers(spec):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1]
            assert "@sha256:" in image or (":" in tag and not tag.endswith(":latest")), \
                f"{name} {_name(obj)}: image {image} is not pinned to a tag or digest"


def test_stage_probes_use_grpc_health(overlay):
    name, objs = overlay
    for stage, (service, port) in STAGES.items():
        dep = _find(objs, "Deployment", stage)
        container = dep["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("HPE3D_GRPC_PORT") == str(port), f"{name} {stage}: HPE3D_GRPC_PORT"
        assert container["command"] == ["python", "-m", f"services.{stage}.server"]
        assert port in {p["containerPort"] for p in container["ports"]}
        readiness = container["readinessProbe"]["grpc"]
        assert readiness["port"] == port and readiness["service"] == f"hpe3d.v1.{service}"
        assert container["livenessProbe"]["grpc"]["port"] == port
        proto = (ROOT / "proto" / "hpe3d" / "v1" / f"{stage}.proto").read_text()
        assert re.search(rf"^\s*service\s+{service}\s*{{", proto, re.M), f"{stage}.proto has no service {service}"


# -- wiring -------------------------------------------------------------------------------------
def test_services_select_pods_and_ports(overlay):
    name, objs = overlay
    pods = [(obj, _pod_labels(obj), spec) for obj, spec in _workloads(objs) if obj["kind"] != "Job"]
    for svc in (o for o in objs if o["kind"] == "Service"):
        matches = [(obj, spec) for obj, labels, spec in pods if _selects(svc["spec"].get("selector", {}), labels)]
        assert matches, f"{name} {_name(svc)} selects no pods"
        for obj, spec in matches:
            ports = {p.get("name") for c in spec["containers"] for p in c.get("ports", [])}
            numbers = {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                assert target in ports or target in numbers, f"{name} {_name(svc)} -> {_name(obj)}: port {target}"


def test_pdbs_and_hpas_target_existing_workloads(overlay):
    name, objs = overlay
    deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    for pdb in (o for o in objs if o["kind"] == "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(_selects(selector, _pod_labels(d)) for d in deployments.values()), _name(pdb)
        assert "maxUnavailable" in pdb["spec"], f"{_name(pdb)}: minAvailable can block node drains"
    for hpa in (o for o in objs if o["kind"] == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments, _name(hpa)
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        container = deployments[target["name"]]["spec"]["template"]["spec"]["containers"][0]
        assert "cpu" in container["resources"]["requests"], f"{_name(hpa)}: CPU HPA needs a CPU request"
    assert "HorizontalPodAutoscaler/triton" not in {_name(o) for o in objs}, \
        "Triton is scaled by hand (GPU count), not by a CPU HPA"


def test_ingress_allows_large_uploads(overlay):
    name, objs = overlay
    ingress = _find(objs, "Ingress", "gateway")
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    upload_mb = int(_find(objs, "ConfigMap", "hpe3d-config")["data"]["HPE3D_MAX_UPLOAD_MB"])
    assert size.endswith("m") and int(size[:-1]) >= upload_mb, f"{name}: body size {size} < {upload_mb} MB"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "gateway"


def test_gateway_metrics_and_readiness_detail_are_not_routed_by_the_ingress(overlay):
    """The API's operations port (HPE3D_METRICS_PORT: /metrics, /readyz with addresses and errors) is a
    container port that the gateway Service, hence the Ingress, does not route; Prometheus scrapes it."""
    name, objs = overlay
    gateway = _find(objs, "Deployment", "gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env.get("HPE3D_METRICS_PORT") == str(ports["operations"]), f"{name}: the operations port is served"
    service = _find(objs, "Service", "gateway")
    routed = {p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
    assert routed == {"http"} and ports["http"] != ports["operations"], f"{name}: the Service routes {routed}"
    ingress = _find(objs, "Ingress", "gateway")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"] == {"name": "gateway", "port": {"name": "http"}}, path
    annotations = gateway["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        assert annotations["prometheus.io/port"] == str(ports["operations"]), f"{name}: scrape the operations port"


# -- Triton variants ----------------------------------------------------------------------------
def test_gpu_overlay_runs_official_triton_on_gpu_nodes(rendered):
    objs = rendered["gpu"]
    triton = _find(objs, "Deployment", "triton")["spec"]["template"]["spec"]
    container = triton["containers"][0]
    # the official image plus LiteRT (deploy/triton/Dockerfile), same tag
    dockerfile = (ROOT / "deploy" / "triton" / "Dockerfile").read_text()
    official = re.search(r"^ARG TRITON_IMAGE=(nvcr\.io/nvidia/tritonserver:(\S+-py3))$", dockerfile, re.M)
    assert official, "deploy/triton/Dockerfile must build on the official nvcr.io Triton image"
    assert container["image"].endswith("/hpe3d/tritonserver:" + official.group(2)), container["image"]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert triton["nodeSelector"] and triton["tolerations"]
    data = _find(objs, "ConfigMap", "hpe3d-config")["data"]
    repo = next(a for a in container["args"] if a.startswith("--model-repository="))
    assert repo == f"--model-repository=s3://http://{data['HPE3D_S3_ENDPOINT']}/{data['HPE3D_S3_BUCKET']}/models"
    env = {e["name"] for e in container["env"]}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env
    init = triton["initContainers"][0]
    assert "upload_model_repository.py" in " ".join(init["command"]) and "pose2d-triton" in init["image"]
    assert (ROOT / "deploy" / "tools" / "upload_model_repository.py").exists()
    assert _find(objs, "Deployment", "triton")["spec"]["replicas"] >= 1
    kinds = {o["kind"] for o in objs}
    assert "NetworkPolicy" in kinds, "production runs with network policies"


def test_local_overlay_runs_cpu_triton_without_gpu(rendered):
    objs = rendered["local"]
    spec = _find(objs, "Deployment", "triton")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert "pose2d-triton" in container["image"]
    assert container["command"][:3] == ["python", "-m", "services.triton.host"]
    assert "nodeSelector" not in spec and "tolerations" not in spec and "initContainers" not in spec
    for obj, pod in _workloads(objs):
        for c in _containers(pod):
            for part in ("requests", "limits"):
                assert "nvidia.com/gpu" not in c["resources"].get(part, {}), f"{_name(obj)} asks for a GPU"


# -- the API, the workers and the queue ---------------------------------------------------------------
def test_api_and_workers_run_apart(overlay):
    name, objs = overlay
    api = _find(objs, "Deployment", "gateway")
    assert api["spec"]["template"]["spec"]["containers"][0]["command"][:3] == ["python", "-m", "gateway.api"]
    assert api["spec"]["replicas"] >= (1 if name in SINGLE_HOST else 2), f"{name}: the API is stateless, run several"
    worker = _find(objs, "Deployment", "worker")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "gateway.worker"]
    images = {c["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1] for c in (
        container, api["spec"]["template"]["spec"]["containers"][0])}
    assert images == {"worker", "gateway"}, f"{name}: the worker runs its own image, the API the gateway image"
    env = {e["name"]: e.get("value") for e in container["env"]}
    probe_port = container["livenessProbe"]["httpGet"]["port"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env.get("HPE3D_METRICS_PORT") == str(ports[probe_port]), f"{name}: worker probes hit its metrics port"
    assert not [s for s in objs if s["kind"] == "Service" and _selects(s["spec"]["selector"], _pod_labels(worker))], \
        "nothing calls a worker: no Service"


def test_nats_runs_jetstream_on_a_volume(overlay):
    name, objs = overlay
    nats = _find(objs, "StatefulSet", "nats")
    container = nats["spec"]["template"]["spec"]["containers"][0]
    image, tag = container["image"].rsplit(":", 1)
    # podman: the same upstream release from the wheel the local stack runs (deploy/podman/nats/Dockerfile)
    official = "nats-server" if name == "podman" else "nats"
    assert image.rsplit("/", 1)[-1] == official and tag.startswith("2.14"), \
        f"the official nats image, the release the local stack runs: {container['image']}"
    args = container["args"]
    assert "--jetstream" in args
    store_dir = args[args.index("--store_dir") + 1]
    claims = {c["metadata"]["name"] for c in nats["spec"]["volumeClaimTemplates"]}
    mounts = [m for m in container["volumeMounts"] if store_dir.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts and mounts[0]["name"] in claims, f"{name}: JetStream's store dir must be on the PVC"
    assert {"client", "monitor"} <= {p["name"] for p in container["ports"]}


# -- network policies -----------------------------------------------------------------------------
def _ingress_sources(policy: dict, port: int) -> list[dict]:
    """The ``from`` entries of the rules that open ``port`` (a rule without ``from`` is everyone)."""
    rules = [r for r in policy["spec"].get("ingress", []) if any(p["port"] == port for p in r.get("ports", []))]
    assert all("from" in r for r in rules), f"{policy['metadata']['name']}: port {port} open to everyone"
    return [f for r in rules for f in r["from"]]


def _pod_names(sources: list[dict]) -> set[str]:
    names = set()
    for source in sources:
        assert set(source) == {"podSelector"}, f"not a pod of this namespace: {source}"
        names.add(source["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
    return names


def test_network_policies_let_only_workers_and_the_api_reach_stages(rendered):
    objs = rendered["gpu"]
    policies = {o["metadata"]["name"]: o for o in objs if o["kind"] == "NetworkPolicy"}
    assert policies["default-deny-ingress"]["spec"]["podSelector"] == {}
    for stage, (_, port) in STAGES.items():
        callers = _pod_names(_ingress_sources(policies[stage], port))
        # the workers call stages; the API probes uploads and checks health for /readyz
        assert callers == {"worker", "gateway"}, f"{stage}: called by {callers}"
    assert _pod_names(_ingress_sources(policies["triton"], 8001)) == {"pose2d", "gateway"}  # /readyz: models
    assert _pod_names(_ingress_sources(policies["triton"], 8000)) == {"pose2d"}
    assert _pod_names(_ingress_sources(policies["nats"], 4222)) == {"gateway", "worker"}
    minio_sources = _ingress_sources(policies["minio"], 9000)
    assert [s["podSelector"]["matchLabels"] for s in minio_sources] == [{"app.kubernetes.io/part-of": "hpe3d"}]
    hpe3d_pods = {o["metadata"]["name"] for o, _ in _workloads(objs)
                  if _pod_labels(o).get("app.kubernetes.io/part-of") == "hpe3d"}
    assert {"gateway", "worker", "decoder", "pose2d", "lifter3d", "renderer", "triton", "minio-bucket"} <= hpe3d_pods
    s3_clients = {o["metadata"]["name"] for o, _ in _workloads(objs)
                  if _pod_labels(o).get("hpe3d.io/s3-client") == "true"}
    assert {"gateway", "worker", "decoder", "pose2d", "lifter3d", "renderer", "triton", "minio-bucket"} <= s3_clients
    # every pod that serves a port has a policy for it (default deny would otherwise cut it off silently)
    selected = {n for p in policies.values() for n in [p["spec"]["podSelector"].get("matchLabels", {}).get(
        "app.kubernetes.io/name")] if n}
    assert {o["metadata"]["name"] for o, _ in _workloads(objs) if o["kind"] != "Job"} <= selected
