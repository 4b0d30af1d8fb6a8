"""Making, listing and revoking API keys: ``hpe3d keys`` through a running API's admin routes, and
``python -m gateway.api.api_keys`` on the store itself (an operator's first key). Real SeaweedFS and
nats-server; the API served by uvicorn on loopback."""
from __future__ import annotations

import os
import subprocess
import sys

import httpx

from gateway.api.api_keys import ApiKeyStore
from hpe3d_cli.cli import main
from tests.conftest import ROOT, bearer, make_api_key


def test_hpe3d_keys_create_list_revoke(api_url, store, capsys, monkeypatch):
    admin = make_api_key(store, "ops", admin=True)
    monkeypatch.setenv("HPE3D_API_KEY", admin)  # the default of --key
    assert main(["keys", "--url", api_url, "create", "--name", "frank"]) == 0
    lines = capsys.readouterr().out.splitlines()
    key_id, key = lines[0].split()[1], lines[1]
    assert key.startswith(f"hpe3d_{key_id}_")
    assert httpx.get(f"{api_url}/v1/session", headers=bearer(key)).json()["user"] == "key:frank"
    assert main(["keys", "--url", api_url, "list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "frank" in listed and key not in listed
    assert main(["keys", "--url", api_url, "revoke", key_id]) == 0
    assert httpx.get(f"{api_url}/v1/session", headers=bearer(key)).status_code == 401
    # a key that is not an admin key may not make keys; no key at all is refused too
    assert main(["keys", "--url", api_url, "--key", make_api_key(store, "user"), "create", "--name", "x"]) == 1
    assert "403" in capsys.readouterr().out
    monkeypatch.delenv("HPE3D_API_KEY")
    assert main(["keys", "--url", api_url, "list"]) == 1
    assert "401" in capsys.readouterr().out


def test_operator_makes_the_first_key_on_the_store(settings):
    env = {**os.environ, **settings.env(), "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "proto"),
                                                                          os.environ.get("PYTHONPATH", "")])}
    made = subprocess.run([sys.executable, "-m", "gateway.api.api_keys", "create", "--name", "first", "--admin"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    from services.common.storage import ObjectStore
    record = ApiKeyStore(ObjectStore.from_settings(settings)).verify(key)
    assert record is not None and record.admin and record.name == "first"
    listed = subprocess.run([sys.executable, "-m", "gateway.api.api_keys", "list"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert record.id in listed.stdout and key not in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "gateway.api.api_keys", "create", "--name", "no spaces"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "key name" in bad.stderr
