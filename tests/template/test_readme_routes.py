"""The README's route table and the OpenAPI document list the same routes (issue 17: the
README, the document and ../shared/API.md must agree; the document is checked against the
code and template.yaml elsewhere)."""

from __future__ import annotations

import json
import re

from tests.conftest import ROOT

NOT_IN_THE_DOCUMENT = {("GET", "/api/docs/")}  # the Swagger UI serving the document itself


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path.split("?")[0])


def _rows(text: str) -> list[tuple[str, str]]:
    table = text.split("\n## Routes", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| (GET|POST|PATCH|PUT|DELETE) `([^`]+)` \|", table, re.M)


def readme_routes(text: str) -> set[tuple[str, str]]:
    return {(method, _normal(path)) for method, path in _rows(text)}


def test_each_route_has_one_row():
    """Two rows for one route (merged edits) say different things about it: one row each."""
    rows = _rows((ROOT / "README.md").read_text())
    assert sorted({row for row in rows if rows.count(row) > 1}) == []


def test_readme_route_table_matches_the_openapi_document():
    document = json.loads((ROOT / "layers/common/python/ticketing/openapi.json").read_text())
    documented = {(method.upper(), _normal(path)) for path, item in document["paths"].items() for method in item}
    listed = readme_routes((ROOT / "README.md").read_text())
    assert listed - NOT_IN_THE_DOCUMENT - documented == set(), "routes in the README's table the API does not have"
    assert documented - listed == set(), "routes the API has that the README's table does not list"


def test_the_comparison_sees_a_missing_row():
    text = "\n## Routes\n| GET `/api/a/{x}/?q=` | public | a |\n| DELETE `/api/b/` | owner | b |\n### next\n| GET `/api/c/` |"
    assert readme_routes(text) == {("GET", "/api/a/{}/"), ("DELETE", "/api/b/")}
