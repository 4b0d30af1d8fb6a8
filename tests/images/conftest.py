"""The container images: built with podman and run from the Kubernetes manifests (``make test-images``)."""
from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "images: builds every image with podman and plays the manifests with podman kube play (tests/images)")
