"""Generate the API's OpenAPI document from every function's routes.

    python -m tools.openapi            write layers/common/python/ticketing/openapi.json
    python -m tools.openapi --check    exit 1 if the committed document has drifted

Powertools' OpenAPIMerge reads each function's resolver; template.yaml adds what only
it knows: which routes need a token (its JWT authorizer). Paths are written with the
trailing slash the clients send.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "layers/common/python/ticketing/openapi.json"


# What the functions must find in their environment to load (their cold-start checks).
BUILD_ENV = {"TABLE_NAME": "openapi-build", "QR_BUCKET": "openapi-build", "POWERTOOLS_METRICS_NAMESPACE": "Ticketing"}


def build() -> dict:
    """The document, from the functions' own routes. Loads every function with BUILD_ENV
    filled in where unset, and leaves the environment and the settings as they were."""
    sys.path.insert(0, str(ROOT / "layers/common/python"))
    sys.path.insert(0, str(ROOT))
    from local.environment import overriding
    from ticketing import config

    missing = {name: value for name, value in BUILD_ENV.items() if not os.environ.get(name)}
    # reread: settings read earlier in this process lacked them, and must not keep them
    with overriding(missing, config.settings.cache_clear):
        return _build()


def _build() -> dict:
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
    from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme  # noqa: F401

    from local.template import load_template

    merge = OpenAPIMerge(
        title="Ticketing API",
        version="1.0.0",
        description="Events, Stripe checkout, QR tickets, gate check-in and refunds. "
        "Errors are {\"error\", \"detail\"} plus optional machine fields.",
        on_conflict="error",
    )
    template = load_template(ROOT / "template.yaml")
    for logical_id in sorted({route.function for route in template.routes}):
        function = template.functions[logical_id]
        merge.add_file(Path(function.code_uri) / f"{function.module}.py", resolver_name="app")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a function that fails to load must fail the build
        schema = json.loads(merge.get_openapi_json_schema())

    secured = {
        (route.method.lower(), route.path.rstrip("/") or "/")
        for route in template.routes
        if route.authorizer
    }
    paths = {}
    for path, operations in sorted(schema.get("paths", {}).items()):
        for method, operation in operations.items():
            if (method, path) in secured:
                operation["security"] = [{"bearerAuth": []}]
        paths[path if path.endswith("/") else path + "/"] = operations
    schema["paths"] = paths
    _define_referenced_models(schema)
    _one_model_a_name(schema)
    _document_errors(schema)
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The Cognito ID token (locally: POST /_local/token on the gateway).",
        }
    }
    schema["servers"] = [{"url": "/"}]
    return schema


REF_PREFIX = "#/components/schemas/"


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _model(name: str):
    """The pydantic model called `name` in the domain package (loaded by the functions)."""
    from pydantic import BaseModel

    found = {
        id(value): value
        for module_name, module in list(sys.modules.items())
        if module_name.startswith("ticketing.") and module is not None
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__name__ == name
    }
    if len(found) != 1:
        raise RuntimeError(f"the document refers to {REF_PREFIX}{name}, and {len(found)} models of the domain have that name")
    return next(iter(found.values()))


def _define_referenced_models(schema: dict) -> None:
    """A route may name a model in its `responses` by hand (a route that answers JSON or CSV
    cannot declare it as its return type, so Powertools never sees it): define each model
    so referred to from the domain's pydantic model of that name, with what it refers to.
    A reference to anything else fails the build, so the document never points nowhere."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    while True:
        missing = {ref for ref in _refs(schema) if ref.startswith(REF_PREFIX)} - {REF_PREFIX + name for name in components}
        if not missing:
            break
        for ref in sorted(missing):
            name = ref[len(REF_PREFIX):]
            generated = _model(name).model_json_schema(ref_template=REF_PREFIX + "{model}", mode="serialization")
            for dependency, definition in generated.pop("$defs", {}).items():
                components.setdefault(dependency, definition)
            components[name] = generated
    unknown = {ref for ref in _refs(schema) if not ref.startswith(REF_PREFIX)}
    if unknown:
        raise RuntimeError(f"references outside the document's schemas: {sorted(unknown)}")


def _one_model_a_name(schema: dict) -> None:
    """Merging the functions' documents keeps one schema per name: two domain models of the
    same name in different functions (an order's `PaymentOut` and a payment history's)
    would silently describe one route with the other's fields. Fail the build instead."""
    for name in schema.get("components", {}).get("schemas", {}):
        if "__" not in name:  # Powertools qualifies names that clash within one function
            try:
                _model(name)
            except RuntimeError as exc:
                if "0 models" not in str(exc):
                    raise


ERRORS = {
    "400": "Malformed JSON or request",
    "401": "No valid token (API Gateway's own {\"message\": \"Unauthorized\"})",
    "403": "Signed in but not allowed (role or policy)",
    "404": "No such resource, or another customer's",
    "409": "Conflicts with the current state",
    "413": "Body too large",
    "422": "Invalid input; `field` names it",
    "429": "Too many holds or requests",
    "500": "A bug (logged with the correlation id)",
    "502": "The payment provider failed; retry",
    "503": "A dependency is down; Retry-After",
}


def _document_errors(schema: dict) -> None:
    """Every operation can answer the API's errors, in the one error format (or API
    Gateway's own `{"message"}` for the answers it gives itself)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = {
        "anyOf": [
            {
                "type": "object", "required": ["error", "detail"],
                "properties": {
                    "error": {"type": "string"}, "detail": {"type": "string"},
                    "code": {"type": "string"}, "field": {"type": "string"},
                },
            },
            {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
        ]
    }
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in schema["paths"].values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERRORS.items():
                if status == "422" or status not in responses:
                    responses[status] = {"description": responses.get(status, {}).get("description") or description, "content": content}
                else:
                    responses[status]["content"] = content


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed document differs")
    args = parser.parse_args()
    text = render(build())
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run `make openapi` and commit it", file=sys.stderr)
            return 1
        print("OpenAPI document is up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
