"""Input is taken as the document types it: no coercion of body values, no `null` text for an
absent parameter, no parameter given twice where a route takes one; and the document carries
every bound the types carry."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from cms.api.webhooks import _URL
from cms.webhooks.targets import check_url

from ..conftest import HAIKU

Client = TestClient  # type: ignore[type-arg]
Tokens = dict[str, dict[str, str]]


def _endpoint(client: Client, tokens: Tokens) -> str:
    made = client.post("/api/webhooks", json={"url": "https://hooks.example.com/build"},
                       headers=tokens["admin"])
    assert made.status_code == 201, made.text
    return made.json()["endpoint"]["id"]  # type: ignore[no-any-return]


def test_body_values_of_another_type_are_refused_naming_the_field(client: Client,
                                                                  tokens: Tokens) -> None:
    endpoint = _endpoint(client, tokens)
    for body, field in (({"enabled": 0}, "enabled"), ({"enabled": "true"}, "enabled"),
                        ({"coalesce_seconds": "5"}, "coalesce_seconds"),
                        ({"coalesce_seconds": -1}, "coalesce_seconds"),
                        ({"events": "comparison.published"}, "events"),
                        ({"colour": "red"}, "colour")):
        refused = client.patch(f"/api/webhooks/{endpoint}", json=body, headers=tokens["admin"])
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["field"] == field, body
    assert client.get(f"/api/webhooks/{endpoint}",
                      headers=tokens["admin"]).json()["enabled"] is True  # nothing was applied
    kept = client.patch(f"/api/webhooks/{endpoint}", json={"enabled": False,
                                                           "coalesce_seconds": 5},
                        headers=tokens["admin"])
    assert kept.status_code == 200, kept.text
    assert kept.json()["coalesce_seconds"] == 5


def test_a_whole_number_written_with_a_point_is_an_integer(client: Client,
                                                           tokens: Tokens) -> None:
    preview = f"/api/drafts/{HAIKU}/preview"
    assert client.post(preview, json={"expires_in": 919.0},
                       headers=tokens["editor"]).status_code == 201
    for value in (919.5, "919", True):
        refused = client.post(preview, json={"expires_in": value}, headers=tokens["editor"])
        assert refused.status_code == 422, value
        assert refused.json()["field"] == "expires_in"


def test_nested_fields_are_named_by_their_path(client: Client, tokens: Tokens) -> None:
    read = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    document = read.json()
    document["tools"][1]["reviews"][0]["quote"] = 5
    refused = client.put(f"/api/drafts/{HAIKU}", json=document,
                         headers={**tokens["editor"], "If-Match": read.headers["etag"]})
    assert refused.status_code == 422
    assert refused.json()["field"] == "tools[1].reviews[0].quote"
    assert client.get(f"/api/drafts/{HAIKU}",
                      headers=tokens["editor"]).headers["etag"] == read.headers["etag"]


def test_query_parameters_are_not_coerced_from_null_or_given_twice(client: Client,
                                                                   tokens: Tokens) -> None:
    for query, field in (("verdict=null", "verdict"), ("verdict=ship&verdict=skip", "verdict"),
                         ("limit=5&limit=6", "limit"), ("sort=title&sort=-title", "sort")):
        refused = client.get(f"/api/comparisons?{query}")
        assert refused.status_code == 400, (query, refused.text)
        assert refused.json() == {"status": 400, "code": "bad_parameter", "field": field,
                                  "message": refused.json()["message"]}, query
    assert client.get("/api/comparisons?verdict=ship&limit=5").status_code == 200
    assert client.get("/api/comparisons?q=null").status_code == 200  # text, taken as text
    history = client.get(f"/api/comparisons/{HAIKU}/history?action=publish&action=seed",
                         headers=tokens["auditor"])
    assert history.status_code == 200  # a list parameter is repeatable


def test_the_document_carries_every_bound_the_types_carry(client: Client) -> None:
    schemas = client.get("/schema/openapi.json").json()["components"]["schemas"]
    assert schemas["EndpointPatch"]["properties"]["coalesce_seconds"]["minimum"] == 0
    authors = schemas["WorkflowRecord"]["properties"]["authors"]["items"]
    assert {"pattern", "maxLength"} <= set(authors)
    assert re.fullmatch(schemas["RevertIn"]["properties"]["to"]["pattern"], "abc1")
    assert schemas["EndpointIn"]["properties"]["url"]["pattern"].startswith("^https?://")


def test_no_parameter_is_documented_as_null(client: Client) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                assert "null" not in str(parameter["schema"]).lower(), (method, path, parameter)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(url=st.from_regex(_URL, fullmatch=True))
def test_every_url_the_document_admits_is_one_deliveries_take(url: str) -> None:
    assert check_url(url) == url


def test_urls_the_document_refuses(client: Client, tokens: Tokens) -> None:
    for url in ("ftp://example.com/hook", "http://user:pw@example.com/hook", "http://1.2.3.999/",
                "http://example.com:65536/", "http://example.com/\x01", "http://[::1/hook"):
        assert not re.search(_URL, url), url
        refused: Any = client.post("/api/webhooks", json={"url": url}, headers=tokens["admin"])
        assert refused.status_code == 422, url
        assert refused.json()["field"] == "url"


def test_a_route_that_takes_a_body_says_so_when_there_is_none(client: Client,
                                                              tokens: Tokens) -> None:
    for route, who in (("/api/drafts", "editor"), ("/api/tokens", "admin"),
                       (f"/api/drafts/{HAIKU}/transitions", "editor")):
        refused = client.post(route, content=b"", headers={**tokens[who],
                                                            "content-type": "application/json"})
        assert refused.status_code == 400, route
        assert refused.json()["field"] == "body", route
    # A body the route may leave out.
    assert client.post(f"/api/drafts/{HAIKU}/preview", content=b"",
                       headers=tokens["editor"]).status_code == 201


def test_a_query_parameter_is_named_as_sent(client: Client, tokens: Tokens) -> None:
    refused = client.get("/api/audit/verdict-changes?format=CSV", headers=tokens["auditor"])
    assert (refused.status_code, refused.json()["field"]) == (400, "format")


def test_a_header_of_one_value_sent_twice_is_refused(client: Client, tokens: Tokens) -> None:
    read = client.get(f"/api/drafts/{HAIKU}", headers=tokens["editor"])
    twice = [("authorization", tokens["editor"]["Authorization"]),
             ("if-match", read.headers["etag"]), ("if-match", '"' + "0" * 40 + '"')]
    refused = client.post(f"/api/drafts/{HAIKU}/transitions", json={"action": "submit"},
                          headers=twice)
    assert (refused.status_code, refused.json()["field"]) == (400, "If-Match")
    tokens_twice = [("authorization", tokens["editor"]["Authorization"]),
                    ("authorization", "Bearer cms_bogus")]
    refused = client.get("/api/drafts", headers=tokens_twice)  # never the first one alone
    assert (refused.status_code, refused.json()["field"]) == (401, "Authorization")
    assert client.get(f"/api/drafts/{HAIKU}",
                      headers=tokens["editor"]).headers["etag"] == read.headers["etag"]


def test_an_unknown_action_is_a_422_whatever_the_revision(client: Client, tokens: Tokens) -> None:
    route = f"/api/drafts/{HAIKU}/transitions"
    for headers in ({}, {"If-Match": '"' + "0" * 40 + '"'}):
        refused = client.post(route, json={"action": "bogus"},
                              headers={**tokens["editor"], **headers})
        assert (refused.status_code, refused.json()["field"]) == (422, "action"), headers


def test_a_body_of_blanks_is_no_body_and_no_json(client: Client, tokens: Tokens) -> None:
    refused = client.post(f"/api/drafts/{HAIKU}/preview", content=b"  \n",
                          headers={**tokens["editor"], "content-type": "application/json"})
    assert (refused.status_code, refused.json()["field"]) == (400, "body")


def test_a_sent_token_is_checked_on_options_too(client: Client) -> None:
    assert client.options("/api/drafts").status_code == 204
    refused = client.options("/api/drafts", headers={"Authorization": "Bearer cms_bogus"})
    assert refused.status_code == 401
