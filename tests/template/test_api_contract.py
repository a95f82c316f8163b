"""../shared/API.md (the clients' contract, read-only here) against what we serve, for the
routes of its section "Payments for returning buyers" (issue 17): each route is in the
OpenAPI document and in the README's route table, and every field, query parameter and
body member the contract names for it is in the document's request or answer of that
route. Fees and free-ticket fields are checked with that work; the section is skipped
where ../shared is not beside the repository."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.template.test_readme_routes import _normal, readme_routes

API_MD = ROOT.parent / "shared" / "API.md"
SECTION = "## Payments for returning buyers"
# Fees and free tickets (issue 17 items 1-2) are another piece of work with its own checks.
NOT_YET = {"fees", "fees_cents", "subtotal_cents", "order_status", "percent_bps", "fixed_cents", "per", "passed_on",
           "refundable"}
# Quoted or back-quoted words in the contract that are values, not names.
VALUES = {"succeeded", "paid", "requires_action", "ticket", "order", "receipt", "refund", "event_changed",
          "event_canceled", "receipt_undeliverable", "below_minimum_charge", "valid"}
ERROR_MEMBERS = {"error", "detail", "code", "field"}  # every answer's error format (ticketing.http)


def contract_rows(text: str) -> list[tuple[list[tuple[str, str]], str]]:
    """([(METHOD, path)], what) per row of the section's route table."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) < 3 or not re.match(r"(GET|POST|PATCH|PUT|DELETE)\b", cells[0]):
            continue
        methods = cells[0].split(" ", 1)[0].split("/")
        paths = re.findall(r"`(/[^`]+)`", cells[0])
        pairs = zip(methods, paths) if len(methods) == len(paths) > 1 else ((m, p) for m in methods for p in paths)
        rows.append(([(method, _normal(path)) for method, path in pairs], cells[-1]))  # "POST/PATCH `a` `b`": in turn
    return rows


def names(what: str) -> set[str]:
    """Field, member and query names the contract's description of a route mentions."""
    found = set(re.findall(r'"([a-z][a-z0-9_]*)"', what))
    for span in re.findall(r"`([^`]+)`", what):
        if re.fullmatch(r"[a-z][a-z0-9_.]*", span):
            found.update(span.split("."))
        found.update(re.findall(r"(?:^|\s)([a-z][a-z0-9_]*): ", span))
    found.update(re.findall(r"\?([a-z][a-z0-9_]*)=", what))
    return found - VALUES - NOT_YET


def _properties(schema: Any, document: dict, seen: set[str]) -> set[str]:
    """Every property name reachable from a schema."""
    out: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                out |= _properties(document["components"]["schemas"][name], document, seen)
        out |= set(schema.get("properties") or {})
        for value in schema.values():
            out |= _properties(value, document, seen)
    elif isinstance(schema, list):
        for value in schema:
            out |= _properties(value, document, seen)
    return out


def served(document: dict, method: str, path: str) -> set[str]:
    """Names in a route's request (parameters, body) and 2xx answers, from the document."""
    operation = next(op for p, item in document["paths"].items() if _normal(p) == path
                     for m, op in item.items() if m.upper() == method)
    found = {parameter["name"] for parameter in operation.get("parameters", [])}
    found |= _properties(operation.get("requestBody"), document, set())
    for status, answer in operation.get("responses", {}).items():
        if status.startswith("2"):
            found |= _properties(answer, document, set())
    return found


@pytest.fixture(scope="module")
def contract() -> str:
    if not API_MD.exists():
        pytest.skip("../shared/API.md is not beside this repository")
    return API_MD.read_text()


def test_every_route_of_the_section_is_served_documented_and_listed(contract):
    document = json.loads((ROOT / "layers/common/python/ticketing/openapi.json").read_text())
    documented = {(method.upper(), _normal(path)) for path, item in document["paths"].items() for method in item}
    listed = readme_routes((ROOT / "README.md").read_text())
    routes = {route for found, _ in contract_rows(contract) for route in found}
    assert len(routes) >= 10
    assert routes - documented == set(), "routes of the contract the API does not serve"
    assert routes - listed == set(), "routes of the contract the README's table does not list"


def test_every_name_the_section_gives_a_route_is_in_its_request_or_answer(contract):
    document = json.loads((ROOT / "layers/common/python/ticketing/openapi.json").read_text())
    missing = {}
    for routes, what in contract_rows(contract):
        for method, path in routes:
            if gaps := names(what) - served(document, method, path) - ERROR_MEMBERS:
                missing[f"{method} {path}"] = sorted(gaps)
    assert missing == {}


def test_the_name_reader_sees_fields_members_and_queries():
    what = ('`{"payments": [{"order_id", "card": {"brand"} or null}], "next_cursor"}`; `?limit=`; a decline sets '
            '`payment.error_message`; `status: "succeeded"`, `kind`: `receipt`')
    assert names(what) == {"payments", "order_id", "card", "brand", "next_cursor", "limit", "payment", "error_message",
                           "status", "kind"}
