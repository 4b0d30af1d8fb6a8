"""The API's Triton readiness check (``gateway.api.triton_ready``) against the real Triton server of
the local stack: its hand-described KServe v2 messages must be understood as Triton's own."""
from __future__ import annotations

import asyncio

import grpc

from gateway.api.triton_ready import triton_ready
from services.common.grpc_server import client_target


def _ask(url: str, models: list[str]) -> tuple[bool, str]:
    async def ask() -> tuple[bool, str]:
        channel = grpc.aio.insecure_channel(client_target(url))
        try:
            return await triton_ready(channel, models, timeout_s=10)
        finally:
            await channel.close()
    return asyncio.run(ask())


def test_served_models_are_ready_and_a_missing_one_is_named(triton_stack):
    url = triton_stack.settings.triton_url
    assert _ask(url, ["blazepose_detector", "blazepose_landmarks"]) == (
        True, "models ready: blazepose_detector, blazepose_landmarks")
    ready, detail = _ask(url, ["blazepose_detector", "no_such_model"])
    assert not ready and "no_such_model" in detail


def test_a_server_that_is_not_there_is_not_ready():
    from hpe3d_cli.local_stack import free_port
    ready, detail = _ask(f"127.0.0.1:{free_port()}", ["blazepose_detector"])
    assert not ready and detail.startswith("UNAVAILABLE")
