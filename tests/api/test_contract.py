"""The OpenAPI document is the contract clients are generated from: it names every operation
stably, says which need a token, validates as OpenAPI 3.1, and describes errors as the API sends
them. (The fuzzer in test_fuzz.py holds every answer to it.)"""

from __future__ import annotations

import json
import re
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient
from openapi_spec_validator import validate
from schemathesis.core.jsonschema.patterns import is_valid_jsonschema_rs_regex

from cms.api.contract import OPERATIONS, route_template
from cms.api.strict_input import strict_input

from ..conftest import HAIKU
from .test_access import MATRIX, PUBLIC, app_routes

Client = TestClient  # type: ignore[type-arg]


def document(client: Client) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi(client: Client) -> None:
    validate(document(client))


def test_every_operation_has_a_stable_readable_id_and_nothing_else_does(client: Client) -> None:
    routes = {(method, route_template(path)) for method, path in app_routes(client)}
    assert routes == set(OPERATIONS)
    ids = [operation.id for operation in OPERATIONS.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", name) for name in ids), ids
    served = {(method.upper(), path): operation["operationId"]
              for path, item in document(client)["paths"].items()
              for method, operation in item.items()}
    assert served == {key: operation.id for key, operation in OPERATIONS.items()}


def test_the_token_an_operation_needs_is_the_one_the_docs_and_the_guards_ask_for(
        client: Client) -> None:
    doc = document(client)
    assert doc["components"]["securitySchemes"] == {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"]}}
    for (method, template), who in MATRIX.items():
        operation = doc["paths"][route_template(template)][method.lower()]
        public = OPERATIONS[(method, route_template(template))].public
        assert public == (who == PUBLIC), (method, template)
        needed = [{}, {"bearer": []}] if public else [{"bearer": []}]  # optional where public
        assert operation["security"] == needed, (method, template)


def test_errors_are_documented_with_the_body_the_api_sends(client: Client) -> None:
    doc = document(client)
    error = doc["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"status", "code", "message"}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}, (method, path, status)
            assert "503" in operation["responses"], (method, path)
    # What a refusal really looks like matches it.
    refused = client.get("/api/drafts")
    assert refused.status_code == 401
    assert set(error["required"]) <= set(refused.json())
    assert "401" in doc["paths"]["/api/drafts"]["get"]["responses"]


def test_a_revoked_token_on_a_public_route_is_a_documented_401(
        client: Client, tokens: dict[str, dict[str, str]]) -> None:
    doc = document(client)
    listed = client.get("/api/tokens", headers=tokens["admin"]).json()
    auditor = next(token for token in listed if token["roles"] == ["auditor"])
    assert client.post(f"/api/tokens/{auditor['id']}/revoke",
                       headers=tokens["admin"]).status_code == 200
    for template in ("/health", "/api/comparisons", "/api/sync", "/api/feed.atom"):
        refused = client.get(template, headers=tokens["auditor"])
        assert refused.status_code == 401, template
        assert refused.json()["field"] == "Authorization"
        assert "401" in doc["paths"][template]["get"]["responses"], template
        assert client.get(template).status_code == 200, template


def test_times_are_written_out_not_numbers_or_bare_dates(client: Client,
                                                         tokens: dict[str, dict[str, str]]) -> None:
    route = "/api/audit/verdict-changes"
    for moment in ("0.5", "1700000000", "2026-11-01", "2026-13-45T00:00:00Z", "2026-11-01T00:00Z"):
        refused = client.get(route, params={"until": moment}, headers=tokens["auditor"])
        assert refused.status_code == 400, moment
        assert refused.json()["field"] == "until", moment
    for moment in ("2026-11-01T00:00:00Z", "2026-11-01T00:00:00.25+02:00", "2026-11-01T00:00:00"):
        assert client.get(route, params={"since": moment},
                          headers=tokens["auditor"]).status_code == 200, moment
    parameters = document(client)["paths"][route]["get"]["parameters"]
    until = next(parameter for parameter in parameters if parameter["name"] == "until")
    assert "pattern" in str(until["schema"])

def test_a_method_a_route_lacks_is_a_405_naming_those_it_has(client: Client) -> None:
    answer = client.patch("/api/drafts")
    assert answer.status_code == 405
    assert answer.json()["code"] == "method_not_allowed"
    assert set(answer.headers["allow"].replace(" ", "").split(",")) >= {"GET", "HEAD", "POST"}


def test_the_revision_a_write_needs_is_a_required_header_and_its_absence_a_428(
        client: Client, tokens: dict[str, dict[str, str]]) -> None:
    doc = document(client)
    writes = {("put", "/api/drafts/{slug}"), ("delete", "/api/drafts/{slug}"),
              ("post", "/api/drafts/{slug}/transitions"), ("post", "/api/drafts/{slug}/revert")}
    for method, path in writes:
        operation = doc["paths"][path][method]
        header = next(p for p in operation["parameters"] if p["name"] == "If-Match")
        assert header["in"] == "header"
        assert header["required"] is True
        assert "428" in operation["responses"]
    answer = client.post("/api/drafts/langgraph-vs-crewai/transitions",
                         json={"action": "submit"}, headers=tokens["editor"])
    assert answer.status_code == 428
    assert answer.json()["code"] == "revision_required"



def test_paths_and_bodies_say_what_the_api_accepts(
        client: Client, tokens: dict[str, dict[str, str]]) -> None:
    doc = document(client)
    slug = next(p for p in doc["paths"]["/api/drafts/{slug}"]["get"]["parameters"]
                if p["name"] == "slug")
    assert slug["schema"]["pattern"] == "^[a-z0-9]+(?:-[a-z0-9]+)*$"
    commit = next(p for p in doc["paths"]["/api/comparisons/{slug}/revisions/{commit}"]["get"][
        "parameters"] if p["name"] == "commit")
    assert commit["schema"]["pattern"] == "^[0-9a-f]{4,40}$"
    refused = client.get("/api/comparisons/langgraph-vs-crewai/revisions/XYZ",
                         headers=tokens["auditor"])
    assert (refused.status_code, refused.json()["field"]) == (400, "commit")
    for name in ("from", "to"):
        refused = client.get("/api/comparisons/langgraph-vs-crewai/diff", params={name: "XYZ"},
                             headers=tokens["auditor"])
        assert (refused.status_code, refused.json()["field"]) == (400, name)
    for body in ("ComparisonIn", "TransitionIn", "TokenIn", "EndpointIn", "VoteIn"):
        assert doc["components"]["schemas"][body]["additionalProperties"] is False, body
    refused = client.post("/api/comparisons/langgraph-vs-crewai/votes",
                          json={"tool": "langgraph", "vote": "ship", "extra": 1})
    assert (refused.status_code, refused.json()["field"]) == (422, "extra")
    # Patterns every client can read: no Python-only end-of-text anchors left.
    assert "\\\\Z" not in json.dumps(doc)


def test_head_answers_every_get_route_with_its_headers_and_no_body(
        client: Client, tokens: dict[str, dict[str, str]]) -> None:
    got = client.get("/api/comparisons/langgraph-vs-crewai")
    head = client.head("/api/comparisons/langgraph-vs-crewai")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-length"] == got.headers["content-length"]
    cached = client.head("/api/comparisons/langgraph-vs-crewai",
                         headers={"If-None-Match": got.headers["etag"]})
    assert cached.status_code == 304
    assert client.head("/api/drafts").status_code == 401
    assert client.head("/api/drafts", headers=tokens["editor"]).status_code == 200
    assert client.head("/api/votes/fold").status_code == 405  # a POST route
    # Every GET operation of the document, with a token that may read it.
    for path, item in document(client)["paths"].items():
        if "get" not in item or "{" in path:
            continue
        as_get = client.get(path, headers=tokens["admin"])
        as_head = client.head(path, headers=tokens["admin"])
        assert (as_head.status_code, as_head.content) == (as_get.status_code, b""), path
        assert "HEAD" in client.options(path).headers["allow"], path
    assert set(client.options(f"/api/drafts/{HAIKU}").headers["allow"].split(", ")) == {
        "DELETE", "GET", "HEAD", "OPTIONS", "PUT"}


def test_the_app_hands_out_the_document_with_its_contract(client: Client) -> None:
    app = client.app
    assert isinstance(app, Litestar)
    schemes = app.openapi_schema.components.security_schemes  # what the framework serves too
    assert schemes is not None
    assert list(schemes) == ["bearer"]


def test_every_route_checks_its_input_strictly(client: Client) -> None:
    for route in client.app.routes:
        for handler in getattr(route, "route_handlers", []):
            # The closest layer's hook is the one that runs: none may set its own.
            assert handler.resolve_before_request() is strict_input, handler


def test_what_a_success_carries_and_what_a_body_may_leave_out_are_documented(
        client: Client, tokens: dict[str, dict[str, str]]) -> None:
    doc = document(client)
    created = client.post(f"/api/drafts/{HAIKU}/preview", headers=tokens["editor"])
    assert created.status_code == 201  # no body at all
    assert doc["paths"]["/api/drafts/{slug}/preview"]["post"]["requestBody"]["required"] is False
    assert doc["paths"]["/api/drafts"]["post"]["requestBody"]["required"] is True
    draft = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    headers = doc["paths"]["/api/drafts/{slug}"]["get"]["responses"]["200"]["headers"]
    assert "ETag" in headers
    assert draft.headers["etag"]
    created_headers = doc["paths"]["/api/drafts"]["post"]["responses"]["201"]["headers"]
    assert {"ETag", "Location"} <= set(created_headers)
    # A body's nesting is checked before anything else, on any route a body may be sent to.
    deep = b"[" * 100 + b"]" * 100
    fold = client.post("/api/votes/fold", content=deep,
                       headers={"content-type": "application/json"})
    assert fold.status_code == 400
    assert "400" in doc["paths"]["/api/votes/fold"]["post"]["responses"]


def test_an_if_match_that_is_no_revision_is_a_400_not_a_missing_one(
        client: Client, tokens: dict[str, dict[str, str]]) -> None:
    read = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    route = f"/api/drafts/{HAIKU}/transitions"
    for sent in ("", "*", '"+abc"', f'{read.headers["etag"]}, "abc"', "W/", '"0123"'):
        refused = client.post(route, json={"action": "submit"},
                              headers={**tokens["editor"], "If-Match": sent})
        assert (refused.status_code, refused.json()["field"]) == (400, "If-Match"), sent
    stale = client.post(route, json={"action": "submit"},
                        headers={**tokens["editor"], "If-Match": '"' + "0" * 40 + '"'})
    assert stale.status_code == 412
    pattern = next(p for p in document(client)["paths"]["/api/drafts/{slug}/transitions"][
        "post"]["parameters"] if p["name"] == "If-Match")["schema"]["pattern"]
    assert re.search(pattern, read.headers["etag"])
    # A public read's weak ETag, with the name of the votes not yet in git, is one to send too.
    assert re.search(pattern, 'W/"' + "a" * 40 + '+0123456789abcdef"')
    assert not re.search(pattern, "*")


def test_a_transition_s_actions_are_the_workflow_s(client: Client) -> None:
    action = document(client)["components"]["schemas"]["TransitionIn"]["properties"]["action"]
    assert action["enum"][:2] == ["submit", "request_changes"]
    assert "edit" not in action["enum"]


def test_every_pattern_compiles_in_the_engines_clients_validate_with(client: Client) -> None:
    """Python's, and the Rust one of the fuzzer's validator (no surrogates, no Python-only
    syntax): a pattern an engine cannot compile is silently dropped by some tools."""
    found: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.append(node["pattern"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document(client))
    assert len(found) > 10
    for pattern in found:
        re.compile(pattern)
        assert is_valid_jsonschema_rs_regex(pattern), pattern[:80]
