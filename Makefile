# hpe3d: set-up, tests, and the local stack. Every target sets up what it needs from scratch.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROTOS := $(wildcard proto/hpe3d/v1/*.proto)
STUBS  := $(PROTOS:.proto=_pb2.py)
MODELS := services/pose2d/models/blazepose/pose_detection.tflite services/pose2d/models/blazepose/pose_landmark_full.tflite

.PHONY: setup proto models test test-unit test-e2e bench clean

setup: $(VENV)/.installed proto models

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

# BlazePose GHUM's .tflite files, taken out of the mediapipe wheel (no other download).
models: $(MODELS)
$(MODELS): $(VENV)/.installed
	$(PY) -m services.pose2d.models.fetch_blazepose

test: setup
	$(PY) -m pytest -q

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-e2e: setup
	$(PY) -m pytest -q tests/e2e

bench: setup
	$(PY) bench/pipeline.py

clean:
	rm -rf $(VENV) $(STUBS) $(PROTOS:.proto=_pb2.pyi) $(PROTOS:.proto=_pb2_grpc.py) services/pose2d/models/blazepose/*.tflite
