"""Fuzzing: schemathesis against the OpenAPI document the stack serves, for every route,
with tokens of each role and none: data that fits the document (positive), data that
breaks it (negative), and bodies sent as media types other than JSON. No answer may be a
5xx, and every answer must match the document. Bounded: a few examples per route, role
and mode, so it fits `make test`."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

EXAMPLES = 4
ROLES = {"anonymous": None, "customer": [], "scanner": ["scanner"], "admin": ["admin"]}
# What else clients send a JSON body as (browsers' fetch sends a string as text/plain).
MEDIA_TYPES = ["text/plain", "application/octet-stream", "application/x-www-form-urlencoded", "multipart/form-data"]


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
        operation = result.ok()
        if operation.path != "/api/tickets/webhook/":  # authenticated by Stripe's signature: covered by test_webhook
            yield operation


def _headers(api, role: str) -> dict[str, str]:
    groups = ROLES[role]
    return {} if groups is None else {"Authorization": f"Bearer {api.token(groups, sub=f'fuzz-{role}')}"}


def _fuzz(stack, operations, headers, strategy_of, media_type: str | None = None) -> tuple[list[str], list[int]]:
    """Run each operation's strategy; (failures, statuses seen)."""
    failures, calls = [], []
    for operation in operations:

        @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.generate], database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy_of(operation))
        def run(case):
            if media_type is not None:
                case.media_type = media_type
            response = case.call(base_url=stack.api_url, headers=headers, timeout=30)
            calls.append(response.status_code)
            try:
                case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))
            except AssertionError as exc:
                failures.append(f"{case.method} {case.formatted_path} ({media_type or 'json'}): {str(exc)[:400]}")
                raise

        try:
            run()
        except (AssertionError, Unsatisfiable):
            pass
    return failures, calls


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("role", list(ROLES))
def test_no_route_answers_5xx_or_off_the_document(api, stack, schema, role, mode):
    failures, calls = _fuzz(stack, list(_operations(schema)), _headers(api, role), lambda op: op.as_strategy(generation_mode=mode))
    assert not failures, "\n\n".join(failures[:10])
    assert len(calls) >= 20, "the document lists the routes, so every one should have been called"
    if mode is GenerationMode.NEGATIVE and role == "admin":
        assert any(400 <= status < 500 for status in calls), "data that breaks the document must be refused"


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("role", ["customer", "admin"])
def test_bodies_in_other_media_types_never_answer_5xx(api, stack, schema, role, media_type):
    with_bodies = [op for op in _operations(schema) if op.body]
    assert len(with_bodies) >= 8
    failures, calls = _fuzz(stack, with_bodies, _headers(api, role), lambda op: op.as_strategy(), media_type)
    assert not failures, "\n\n".join(failures[:10])
    assert len(calls) >= len(with_bodies)
