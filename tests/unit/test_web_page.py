"""The web page's server side and its static files, without a browser: the routes of
``gateway/api/web.py`` on a bare FastAPI app, the option descriptions, that every module the page
imports is served, and that the page's copies of the skeleton and the person colours agree with
the Python ones (tests/browser drives the page itself in Chromium)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api.authentication import Caller, require_caller
from gateway.api.options import describe_options
from gateway.api.web import REDOC_CDN_LOGO, STATIC, install_web
from services.common.settings import Settings
from services.common.skeletons import COCO17, H36M17

JS = STATIC / "js"
JOB_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI(title="hpe3d gateway", docs_url=None, redoc_url=None)
    install_web(app, Settings(max_persons=3, working_size=512, max_upload_mb=50))
    # no API state here: /v1/options is asked by a signed-in caller (authentication has its own tests)
    app.dependency_overrides[require_caller] = lambda: Caller(user="key:tester", admin=False)
    return TestClient(app)


def js_array(source: str, name: str):
    """The literal of ``export const NAME = [...]`` in a page module, parsed as JSON."""
    match = re.search(rf"export const {name} = (\[.*?\]);", source, re.S)
    assert match, f"{name} not found"
    return json.loads(re.sub(r",\s*\]", "]", match.group(1)))


def test_page_and_permalinks_return_the_page(client):
    for path in ("/", f"/jobs/{JOB_ID}"):
        resp = client.get(path)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/static/js/main.js">' in resp.text
    assert client.get("/jobs/not-a-job").status_code == 404


def test_everything_the_page_loads_is_served(client):
    html = client.get("/").text
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    urls += list(json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1))["imports"].values())
    for url in urls:
        if not url.endswith("/"):
            assert client.get(url).status_code == 200, url
    # every relative import of every page module resolves to a file that is served
    for module in JS.glob("*.js"):
        for target in re.findall(r'^import .*? from "(\.[^"]+)";', module.read_text(), re.M):
            resolved = (module.parent / target).resolve().relative_to(STATIC)
            assert client.get(f"/static/{resolved.as_posix()}").status_code == 200, (module.name, target)
    assert client.get("/static/vendor/three/addons/controls/OrbitControls.js").status_code == 200


def test_vendored_libraries_carry_their_licences():
    for folder in ("three", "uplot"):
        assert "MIT License" in (STATIC / "vendor" / folder / "LICENSE").read_text()


def test_docs_and_redoc_use_only_local_assets(client):
    for path in ("/docs", "/redoc"):
        html = client.get(path).text
        assert "hpe3d gateway" in html
        assert not re.findall(r'(?:src|href)="(https?:)?//', html), html
        assert "fonts.googleapis" not in html
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/docs-assets/favicon.png"):
        assert client.get(asset).status_code == 200, asset
    script = client.get("/redoc/redoc.standalone.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert REDOC_CDN_LOGO not in script.text


def test_options_carry_the_server_defaults_and_the_api_bounds(client):
    body = client.get("/v1/options").json()
    options = {o["name"]: o for o in body["options"]}
    assert options["max_persons"]["default"] == 3 and options["max_persons"]["maximum"] == 16
    assert options["max_persons"]["minimum"] == 1  # 0 means "server default" on the wire
    assert options["working_size"]["default"] == 512
    assert options["working_size"]["server_default_setting"] == "HPE3D_WORKING_SIZE"
    assert options["render"] == {**options["render"], "type": "boolean", "default": True}
    assert all(o["help"] for o in options.values())
    assert body["limits"]["max_upload_mb"] == 50
    assert describe_options(Settings()).options[0].default == Settings().max_persons


def test_page_skeleton_matches_h36m17():
    source = (JS / "skeleton.js").read_text()
    assert js_array(source, "H36M17_JOINTS") == list(H36M17.joints)
    assert [tuple(b) for b in js_array(source, "H36M17_BONES")] == list(H36M17.bones)
    assert js_array(source, "H36M17_LEFT") == list(H36M17.left)
    assert js_array(source, "H36M17_RIGHT") == list(H36M17.right)


def test_page_2d_skeleton_matches_coco17():
    source = (JS / "skeleton.js").read_text()
    assert [tuple(b) for b in js_array(source, "COCO17_BONES")] == list(COCO17.bones)
    assert js_array(source, "COCO17_LEFT") == list(COCO17.left)
    assert js_array(source, "COCO17_RIGHT") == list(COCO17.right)


def test_page_person_colours_match_the_rendered_overlay():
    draw = pytest.importorskip("services.renderer.draw")
    source = (JS / "colours.js").read_text()
    rgb = [tuple(c) for c in js_array(source, "TRACK_COLOURS_RGB")]
    assert rgb == [tuple(reversed(bgr)) for bgr in draw.TRACK_COLOURS]


def test_static_files_are_package_data():
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    line = next(line for line in pyproject.splitlines() if line.startswith('"gateway.api.static"'))
    for pattern in ("*.html", "*.css", "js/*.js", "vendor/**/*"):
        assert f'"{pattern}"' in line
