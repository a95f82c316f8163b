"""Fuzzing: schemathesis against the OpenAPI document the stack serves, for every route,
with tokens of each role and none. No answer may be a 5xx, and every answer must match
the document. Bounded: a few examples per route and role, so it fits `make test`."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.checks import not_a_server_error

EXAMPLES = 4


@pytest.fixture(scope="module")
def schema(stack):
    return schemathesis.openapi.from_url(f"{stack.api_url}/api/docs/?format=json")


def test_the_served_document_passes_openapi_spec_validator(api):
    from openapi_spec_validator import validate

    served = api.get("/api/docs/?format=json")
    assert served.status_code == 200
    validate(served.json())  # a dangling $ref (e.g. to an undefined schema) raises


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


@pytest.mark.parametrize("role", [None, [], ["scanner"], ["admin"]], ids=["anonymous", "customer", "scanner", "admin"])
def test_no_route_answers_5xx_or_off_the_document(api, stack, schema, role):
    headers = {}
    if role is not None:
        headers["Authorization"] = f"Bearer {api.token(role, sub=f'fuzz-{len(role)}')}"
    failures, calls = [], []
    for operation in _operations(schema):
        if operation.path == "/api/tickets/webhook/":
            continue  # authenticated by Stripe's signature: covered by test_webhook

        @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.generate], database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            response = case.call(base_url=stack.api_url, headers=headers, timeout=30)
            calls.append(response.status_code)
            try:
                case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))
            except AssertionError as exc:
                failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:400]}")
                raise

        try:
            run()
        except AssertionError:
            pass
    assert not failures, "\n\n".join(failures[:10])
    assert len(calls) >= 20, "the document lists the routes, so every one should have been called"
