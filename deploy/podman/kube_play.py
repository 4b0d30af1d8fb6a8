"""Run a rendered kustomize overlay on one host with ``podman kube play``: the manifests are the only
description of the system; this turns them into what podman 4.3 can play, mechanically.

    python deploy/podman/kube_play.py up   [--overlay deploy/k8s/overlays/podman] [--network hpe3d]
    python deploy/podman/kube_play.py down [--network hpe3d]

``up`` renders the overlay with ``kubectl kustomize``, then:

- every Secret becomes a podman secret of the same name (its ``data``, the form ``kube play`` reads for
  ``secretKeyRef``);
- every Deployment, StatefulSet and Job becomes one Pod named after the workload, with the workload's pod
  template. A Pod's name is its DNS name on the podman network, so ``decoder:50051``, ``minio:9000`` and
  ``nats://nats:4222`` in the ConfigMap reach it as a Service would (every Service must select exactly the
  workload of its own name, which is checked). ``kube play`` names Deployment pods ``<name>-pod-0``, which
  nothing resolves, hence Pods. One replica each; a StatefulSet's volume claims become ``emptyDir`` volumes
  (kept across container restarts, removed with the pod); a Job's pod keeps its ``restartPolicy``
  (``OnFailure``), the others ``Always``: a container that exits is started again;
- a Memory ``emptyDir`` mounted at ``/dev/shm`` (Triton's shared memory) is left to podman's own tmpfs
  ``/dev/shm``: ``kube play`` would mount a root-owned directory on disk there, which uid 10001 cannot write;
- probes are left out: ``kube play`` turns an ``httpGet`` liveness probe into a ``curl`` health check that
  restarts the container when it fails, and no image has curl (nor does ``kube play`` know ``grpc``
  probes). Whoever plays the system checks readiness itself (``tests/images`` asks the API's ``/readyz``
  and runs every probe of the manifests against the running pods);
- container ports are left out: podman 4.3 would publish each on the host, where the API's and the
  workers' operations port :9464 collide; pods reach each other on the podman network;
- ConfigMaps are kept; what podman has no use for on one host (Namespace, ServiceAccount, Service,
  PodDisruptionBudget, HorizontalPodAutoscaler, Ingress, NetworkPolicy) is left out and listed.

The Pods and ConfigMaps go to ``.cache/podman/<network>.yaml`` and ``podman kube play --network <network>``
starts them; ``down`` tears down what that file describes, its secrets and the network.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = ROOT / ".cache" / "tools" / "kubectl"
STATE_DIR = ROOT / ".cache" / "podman"
DEFAULT_OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "podman"
WORKLOADS = ("Deployment", "StatefulSet", "Job")
LEFT_OUT = ("Namespace", "ServiceAccount", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "Ingress", "NetworkPolicy")
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


class PlayError(RuntimeError):
    """The manifests cannot be played as they are."""


def render(overlay: Path) -> list[dict]:
    if not KUBECTL.exists():
        subprocess.run([sys.executable, str(ROOT / "deploy/tools/fetch_kubectl.py")], check=True, cwd=ROOT)
    out = subprocess.run([str(KUBECTL), "kustomize", str(overlay)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def to_podman(objects: list[dict]) -> tuple[list[dict], list[dict], list[str]]:
    """(Secrets, the documents to play: ConfigMaps then Pods, what was left out as ``Kind/name``)."""
    secrets, configmaps, pods, left_out = [], [], [], []
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "Secret":
            secrets.append(obj)
        elif kind == "ConfigMap":
            configmaps.append(obj)
        elif kind in WORKLOADS:
            pods.append(_pod(obj))
        elif kind in LEFT_OUT:
            left_out.append(f"{kind}/{name}")
        else:
            raise PlayError(f"{kind}/{name}: podman kube play has no equivalent")
        if kind == "Service":
            selector = obj["spec"].get("selector") or {}
            chosen = [w["metadata"]["name"] for w in workloads
                      if _selects(selector, w["spec"]["template"]["metadata"].get("labels", {}))]
            if chosen != [name]:
                raise PlayError(f"Service/{name} selects {chosen or 'nothing'}: on podman a Service name resolves "
                                f"only to the pod of a workload with that name")
    return secrets, configmaps + pods, left_out


def _pod(workload: dict) -> dict:
    name = workload["metadata"]["name"]
    template = workload["spec"]["template"]
    spec = json.loads(json.dumps(template["spec"]))  # a deep copy
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        spec.setdefault("volumes", []).append({"name": claim["metadata"]["name"], "emptyDir": {}})
    memory = {v["name"] for v in spec.get("volumes", []) if (v.get("emptyDir") or {}).get("medium") == "Memory"}
    dropped = set()
    for container in spec.get("initContainers", []) + spec["containers"]:
        for probe in PROBES:
            container.pop(probe, None)
        # podman 4.3 publishes every containerPort on the host (as if hostPort were set), so two pods
        # with the same port (the API's and the workers' :9464) collide; the pods reach each other on
        # the podman network by name and address, so nothing is published
        container.pop("ports", None)
        # podman gives every container a tmpfs /dev/shm, which is what a Memory emptyDir there gives on
        # Kubernetes; kube play would mount a root-owned directory on disk over it instead
        mounts = container.get("volumeMounts", [])
        shm = [m for m in mounts if m["mountPath"] == "/dev/shm" and m["name"] in memory]
        if shm:
            container["volumeMounts"] = [m for m in mounts if m not in shm]
            dropped |= {m["name"] for m in shm}
    still_used = {m["name"] for c in spec.get("initContainers", []) + spec["containers"]
                  for m in c.get("volumeMounts", [])}
    spec["volumes"] = [v for v in spec.get("volumes", []) if v["name"] not in dropped - still_used]
    if workload["kind"] != "Job":
        spec["restartPolicy"] = "Always"
    metadata = {"name": name, "labels": dict(template.get("metadata", {}).get("labels", {}))}
    if template.get("metadata", {}).get("annotations"):
        metadata["annotations"] = dict(template["metadata"]["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def podman_secret_data(secret: dict) -> str:
    """A Secret as ``kube play`` reads a podman secret for ``secretKeyRef``: a JSON map of base64 values."""
    import base64
    data = dict(secret.get("data") or {})
    for key, value in (secret.get("stringData") or {}).items():
        data[key] = base64.b64encode(value.encode()).decode()
    return json.dumps(data)


def _podman(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, text=True, **kw)


def state_file(network: str) -> Path:
    return STATE_DIR / f"{network}.yaml"


def up(overlay: Path, network: str) -> Path:
    objects = render(overlay)
    secrets, documents, left_out = to_podman(objects)
    down(network, quiet=True)
    pods = [d["metadata"]["name"] for d in documents if d["kind"] == "Pod"]
    taken = [name for name in pods if _podman("pod", "exists", name, check=False).returncode == 0]
    if taken:  # pod names are host-wide: one played system per host
        raise PlayError(f"pods {', '.join(taken)} already exist (a system played on another network?); "
                        f"`python deploy/podman/kube_play.py down --network NAME` removes it")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = state_file(network)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    (STATE_DIR / f"{network}.secrets").write_text("\n".join(s["metadata"]["name"] for s in secrets))
    _podman("network", "create", network, capture_output=True)
    for secret in secrets:
        _podman("secret", "rm", secret["metadata"]["name"], check=False, capture_output=True)
        _podman("secret", "create", secret["metadata"]["name"], "-", input=podman_secret_data(secret),
                capture_output=True)
    print(f"left out (nothing to run on one host): {', '.join(left_out)}", flush=True)
    played = _podman("kube", "play", "--network", network, str(path), check=False, capture_output=True)
    if played.returncode != 0:
        raise PlayError(f"podman kube play failed:\n{played.stdout}{played.stderr}")
    print(f"playing {len(pods)} pods on network {network}: {', '.join(pods)}", flush=True)
    return path


def down(network: str, quiet: bool = False) -> None:
    path = state_file(network)
    out = {"capture_output": True} if quiet else {}
    if path.exists():
        _podman("kube", "down", str(path), check=False, **out)
    secrets_file = STATE_DIR / f"{network}.secrets"
    if secrets_file.exists():
        for name in secrets_file.read_text().split():
            _podman("secret", "rm", name, check=False, **out)
    if _podman("network", "exists", network, check=False).returncode == 0:
        _podman("network", "rm", "-f", network, check=False, **out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--overlay", type=Path, default=DEFAULT_OVERLAY)
    parser.add_argument("--network", default="hpe3d", help="podman network (and name of the state file)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.overlay, args.network)
        else:
            down(args.network)
    except PlayError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
