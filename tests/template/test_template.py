"""template.yaml: linted by the SAM CLI, built where python3.12 exists, and consistent
with the code (routes, OpenAPI document, least privilege)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from local.template import load_template
from tests.conftest import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")


def _sam() -> str:
    candidate = os.environ.get("SAM_BIN") or str(ROOT / ".venvs/sam/bin/sam")
    if not Path(candidate).exists():
        pytest.skip(f"SAM CLI not installed at {candidate}: run `make test`, which installs it")
    return candidate


def _sam_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1", **extra}


def test_sam_validate_lint_is_clean():
    result = subprocess.run(
        [_sam(), "validate", "--lint", "--template", str(ROOT / "template.yaml"), "--region", "us-east-1"],
        capture_output=True, text=True, env=_sam_env(), timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def _python312_env() -> dict[str, str] | None:
    """An environment in which `python3.12` runs: on PATH already, or through pyenv."""
    if shutil.which("python3.12") and subprocess.run(["python3.12", "-V"], capture_output=True).returncode == 0:
        return _sam_env()
    if shutil.which("pyenv"):
        versions = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True).stdout.split()
        py312 = sorted(v for v in versions if v.startswith("3.12"))
        if py312:
            current = subprocess.run(["pyenv", "version-name"], capture_output=True, text=True).stdout.strip()
            env = _sam_env(PYENV_VERSION=":".join(filter(None, [current, py312[-1]])))
            if subprocess.run(["python3.12", "-V"], capture_output=True, env=env).returncode == 0:
                return env
    return None


@contextmanager
def _wheel_index(env: dict[str, str]) -> Iterator[str]:
    """The functions' pinned wheels, fetched once from PyPI for Lambda's platform and served
    as a package index on loopback for the block. SAM runs pip once per function, and pip
    spends about 20 s of CPU reading PyPI's pages of botocore, pydantic and the rest each
    time: 16 functions took 4 to 5 minutes, and take about one served from here. Served over HTTP,
    not from a folder: pip says "Processing" for a local file, and SAM then calls
    `pip wheel` on each one (a second per wheel)."""
    pins = sorted({line.split()[0] for path in ROOT.glob("functions/*/requirements.txt")
                   for line in path.read_text().splitlines() if "==" in line and not line.lstrip().startswith("#")})
    wheels = ROOT / ".aws-sam" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    fetched = subprocess.run(
        ["python3.12", "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
         "--python-version", "3.12", "--platform", "manylinux2014_x86_64", "--dest", str(wheels), *pins],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert fetched.returncode == 0, fetched.stderr[-4000:]
    pages: dict[str, list[str]] = {}
    for wheel in wheels.glob("*.whl"):
        pages.setdefault(re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower(), []).append(wheel.name)
    for name, files in pages.items():
        page = wheels / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="../../{file}">{file}</a>\n' for file in sorted(files))
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(wheels)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/simple/"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    disable_nagle_algorithm = True  # a file's last short segment otherwise waits for pip's delayed ACK

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


def test_sam_build_succeeds_and_packages_only_what_each_function_imports(tmp_path):
    sam = _sam()
    env = _python312_env()
    if env is None:
        pytest.skip("no python3.12 interpreter found (the template's runtime); sam build needs one on PATH")
    build_dir = tmp_path / "build"
    (tmp_path / "samconfig.toml").write_text("version = 0.1\n")
    with _wheel_index(env) as index:
        result = subprocess.run(
            # Without samconfig.toml's `parallel` and `cached`: one function after another uses
            # one core (this test worker's), and a fresh build copies each function's
            # dependencies once instead of three times (55 s and 53 s of CPU against 85 s and
            # 133 s here, from an empty cache; a test run is always a fresh build).
            [sam, "build", "--config-file", str(tmp_path / "samconfig.toml"),
             "--template", str(ROOT / "template.yaml"), "--build-dir", str(build_dir), "--region", "us-east-1"],
            capture_output=True, text=True, timeout=900, cwd=ROOT,
            env={**env, "PIP_INDEX_URL": index, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": ""},
        )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    catalogue = build_dir / "CatalogueFunction"
    assert (catalogue / "app.py").exists() and (catalogue / "pydantic").is_dir()
    assert not (catalogue / "stripe").exists() and not (catalogue / "PIL").exists()
    # The layer has no third-party code and no BuildMethod: SAM ships its folder as it is,
    # and Lambda finds /opt/python/ticketing.
    built = load_template(build_dir / "template.yaml")
    layer = (build_dir / built.resources["CommonLayer"]["Properties"]["ContentUri"]).resolve()
    assert (layer / "python/ticketing/openapi.json").exists()
    assert (layer / "python/ticketing/http.py").exists()


def test_every_route_is_declared_with_and_without_the_trailing_slash():
    declared = {(route.method, route.path) for route in TEMPLATE.routes}
    for method, path in declared:
        twin = path.rstrip("/") if path.endswith("/") else path + "/"
        assert (method, twin) in declared, f"{method} {path} has no {twin} twin"
    for route in TEMPLATE.routes:
        twin = next(r for r in TEMPLATE.routes if r.method == route.method and r.path.rstrip("/") == route.path.rstrip("/"))
        assert (twin.function, twin.authorizer) == (route.function, route.authorizer)


def test_openapi_document_is_current():
    from tools.openapi import OUT, build, render

    assert OUT.read_text(encoding="utf-8") == render(build()), "run `make openapi` and commit the result"


def test_openapi_document_passes_the_spec_validator():
    from openapi_spec_validator import validate

    from tools.openapi import OUT

    validate(json.loads(OUT.read_text(encoding="utf-8")))  # raises on a dangling $ref, among others


def test_openapi_build_refuses_a_reference_to_nothing():
    from tools.openapi import _define_referenced_models

    schema = {"paths": {"/x/": {"get": {"responses": {"200": {"content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/NoSuchModel"}}}}}}}}, "components": {"schemas": {}}}
    with pytest.raises(RuntimeError, match="NoSuchModel"):
        _define_referenced_models(schema)


def test_documented_routes_are_exactly_the_declared_ones():
    spec = json.loads((ROOT / "layers/common/python/ticketing/openapi.json").read_text())
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    declared = {(r.method, r.path) for r in TEMPLATE.routes if r.path.endswith("/") and r.path != "/api/docs/"}
    assert documented == declared


def test_table_is_on_demand_with_pitr_ttl_and_the_indexes():
    props = TEMPLATE.resources["Table"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert [key["AttributeName"] for key in props["KeySchema"]] == ["PK", "SK"]
    assert {index["IndexName"] for index in props["GlobalSecondaryIndexes"]} >= {"GSI1"}


def test_bucket_is_private_and_encrypted():
    props = TEMPLATE.resources["QrBucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def test_policies_are_least_privilege():
    for function in TEMPLATE.functions.values():
        for policy in function.properties.get("Policies", []):
            assert isinstance(policy, dict) and "Statement" in policy, f"{function.logical_id}: use explicit statements"
            for statement in policy["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert all(not a.endswith(":*") and a != "*" for a in actions), f"{function.logical_id}: {actions}"
                assert statement["Resource"] != "*" or all(a.startswith(("ses:", "cloudwatch:")) for a in actions)


def test_public_routes_are_exactly_the_public_ones():
    public = {r.path.rstrip("/") for r in TEMPLATE.routes if r.authorizer is None}
    assert public == {
        "/api/events", "/api/events/{event_id}", "/api/payment/config", "/api/docs",
        "/api/tickets/webhook",  # Stripe: authenticated by its signature instead
        "/api/webhooks/health",
    }
    assert all(r.authorizer == "CognitoJwt" for r in TEMPLATE.routes if r.path.rstrip("/") not in public)
