"""The pages' serving and packaging, in process: the local gateway's /app/ (no way out of
web/, gzip as CloudFront does, the local-only card form, config.json) and what a deploy
publishes (never the local card form; config.json pointing at the API and the hosted UI)."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from local.gateway.static import StaticSite
from tests.conftest import ROOT
from tools import deploy_web


@pytest.fixture
def site(tmp_path):
    (tmp_path / "app" / "js").mkdir(parents=True)
    (tmp_path / "local").mkdir()
    (tmp_path / "app" / "index.html").write_text("<h1>home</h1>")
    (tmp_path / "app" / "js" / "a.js").write_text("export const a = 1;")
    (tmp_path / "local" / "card.js").write_text("export function mount() {}")
    (tmp_path / "secret.txt").write_text("outside")
    return StaticSite(tmp_path, "http://127.0.0.1:8420")


def test_pages_are_served_with_their_types_and_gzip_when_accepted(site):
    status, headers, body = site.answer("GET", "/app/js/a.js", "gzip, deflate")
    assert status == 200
    assert ("Content-Type", "text/javascript; charset=utf-8") in headers and ("Content-Encoding", "gzip") in headers
    assert gzip.decompress(body) == b"export const a = 1;"
    status, headers, body = site.answer("GET", "/app/", "")
    assert (status, body) == (200, b"<h1>home</h1>") and not any(k == "Content-Encoding" for k, _ in headers)
    assert site.answer("GET", "/app", "")[:2] == (308, [("Location", "/app/")])


def test_config_names_the_stripe_stand_in_and_the_local_card_form_is_served_locally(site):
    status, _, body = site.answer("GET", "/app/config.json", "")
    assert status == 200 and json.loads(body) == {"mode": "local", "api": "", "stripe_api": "http://127.0.0.1:8420"}
    assert site.answer("GET", "/app/local/card.js", "")[2] == b"export function mount() {}"


@pytest.mark.parametrize("path", ["/app/../secret.txt", "/app/local/../../secret.txt", "/app/js/../../secret.txt",
                                  "/app/missing.html", "/app/js/", "/app/%2e%2e/secret.txt"])
def test_nothing_outside_the_pages_and_nothing_missing(site, path):
    assert site.answer("GET", path, "")[0] == 404


def test_only_get_and_head(site):
    assert site.answer("POST", "/app/index.html", "")[0] == 405
    assert site.answer("HEAD", "/app/index.html", "")[0] == 200


def test_a_deploy_publishes_the_pages_without_the_local_card_form(tmp_path):
    app = tmp_path / "app"
    (app / "vendor").mkdir(parents=True)
    (app / "vendor" / "jsQR.js").write_text("x")
    (app / "vendor" / ".built").write_text("")
    (app / "scanner.html").write_text("<title>s</title>")
    outputs = {"ApiUrl": "https://abc.execute-api.eu-west-1.amazonaws.com/", "HostedUiDomain": "t.auth.eu-west-1.amazoncognito.com",
               "UserPoolClientId": "client123"}
    files = {p.as_posix() for p in deploy_web.build(tmp_path / "out", outputs, app=app)}
    assert files == {"config.json", "scanner.html", "vendor/jsQR.js"}
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == {
        "mode": "aws", "api": "https://abc.execute-api.eu-west-1.amazonaws.com",
        "cognito": {"domain": "t.auth.eu-west-1.amazoncognito.com", "client_id": "client123"}}


def test_no_deployed_page_holds_a_card_field_or_loads_a_script_from_elsewhere_than_stripe():
    for path in (ROOT / "web" / "app").rglob("*"):
        if path.suffix not in (".html", ".js") or "vendor" in path.parts:
            continue
        text = path.read_text()
        assert "card[number]" not in text and "cc-number" not in text, path
        scripts = re.findall(r"(?:src[=:]\s*['\"]|import\(\s*['\"`])((?:https?:)?//[^'\"`]+)", text)
        assert all(url.startswith("https://js.stripe.com/") for url in scripts), (path, scripts)
