"""The API's contract as the OpenAPI document states it, for clients generated from it.

The framework describes each route's parameters and bodies from the handlers; what it cannot
know is kept here, one line per operation: a stable operationId, whether the operation needs
a token, and every error status it can answer. The document is then made to say so: a bearer
security scheme, the security of each operation (none for public reads), and each error with
the body the API really sends (``{status, code, message, field?}``) instead of the framework's
own. ``tests/api/test_contract.py`` holds the table to the routes and the fuzzer holds the
document to what the API answers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.config.app import AppConfig
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from ..content.model import SLUG_RE, WORKFLOW_NAME_RE
from ..editing.comments import COMMENT_ID
from ..editing.releases import RELEASE_ID
from ..editing.scheduled import CANCEL
from .constraints import restore, structs_by_name
from .http import IF_MATCH_PATTERN


class Operation(NamedTuple):
    id: str
    # The statuses it answers besides its success (and those every operation can answer).
    statuses: tuple[int, ...]
    public: bool = False
    # The media types of its success, where they are not just JSON.
    media: tuple[str, ...] = ()
    # Headers its success carries: ETag names the revision a write sends back in If-Match.
    headers: tuple[str, ...] = ()
    # Whether a request may leave the body out (the route takes it with a default).
    optional_body: bool = False


# Statuses that go together: a token's refusals, a path naming something, a body to check, a
# write that names the revision it read.
_TOKEN = (401, 403)
_NAMED = (400, 404)
_BODY = (400, 413, 422)
_REVISION = (409, 412, 428)
_TAG = ("ETag",)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation("getHealth", (), public=True),
    ("GET", "/api/comparisons"):
        Operation("listComparisons", (304, 400), public=True, headers=_TAG),
    ("GET", "/api/comparisons/{slug}"):
        Operation("getComparison", (304, *_NAMED), public=True, headers=_TAG),
    ("GET", "/api/comparisons/{slug}/verdict-changes"):
        Operation("getPublishedVerdictChanges", (304, *_NAMED), public=True, headers=_TAG),
    ("GET", "/api/verdict-changes"):
        Operation("listPublishedVerdictChanges", (304, 400), public=True, headers=_TAG),
    ("POST", "/api/comparisons/{slug}/votes"):
        Operation("castVote", (*_BODY, 404, 429), public=True),
    ("POST", "/api/votes/fold"): Operation("foldVotes", _TOKEN),
    ("GET", "/api/sync"): Operation("syncPublished", (400, 410), public=True),
    ("GET", "/api/feed.atom"):
        Operation("getAtomFeed", (304, 400), public=True, media=("application/atom+xml",),
                  headers=_TAG),
    ("GET", "/api/feed.json"):
        Operation("getJsonFeed", (304, 400), public=True, media=("application/feed+json",),
                  headers=_TAG),
    ("GET", "/api/preview/{token}"): Operation("getPreview", (404, 410), public=True),
    # Signed by the forge, not by a token.
    ("POST", "/api/hooks/git"): Operation("fetchUpstream", (403, 404, 413), public=True),
    ("GET", "/api/comparisons/{slug}/diff"):
        Operation("getComparisonDiff", (*_TOKEN, *_NAMED, 409)),
    ("GET", "/api/comparisons/{slug}/history"):
        Operation("getComparisonHistory", (*_TOKEN, *_NAMED)),
    ("GET", "/api/comparisons/{slug}/revisions/{commit}"):
        Operation("getComparisonRevision", (*_TOKEN, *_NAMED), headers=_TAG),
    ("GET", "/api/audit/verdict-changes"):
        Operation("listVerdictChanges", (*_TOKEN, 400), media=("application/json", "text/csv")),
    ("GET", "/api/audit/verify"): Operation("verifyMain", _TOKEN),
    ("GET", "/api/drafts"): Operation("listDrafts", (*_TOKEN, 400)),
    ("POST", "/api/drafts"):
        Operation("createDraft", (*_TOKEN, *_BODY, 409), headers=(*_TAG, "Location")),
    ("GET", "/api/drafts/{slug}"): Operation("getDraft", (*_TOKEN, *_NAMED), headers=_TAG),
    ("PUT", "/api/drafts/{slug}"):
        Operation("updateDraft", (*_TOKEN, *_BODY, 404, *_REVISION), headers=_TAG),
    ("DELETE", "/api/drafts/{slug}"): Operation("discardDraft", (*_TOKEN, *_NAMED, *_REVISION)),
    ("POST", "/api/drafts/{slug}/revert"):
        Operation("revertDraft", (*_TOKEN, *_BODY, 404, *_REVISION), headers=_TAG),
    ("POST", "/api/drafts/{slug}/transitions"):
        Operation("transitionDraft", (*_TOKEN, *_BODY, 404, *_REVISION), headers=_TAG),
    ("POST", "/api/drafts/{slug}/preview"):
        Operation("createPreview", (*_TOKEN, *_BODY, 404), optional_body=True),
    ("DELETE", "/api/drafts/{slug}/preview/{preview_id}"):
        Operation("revokePreview", (*_TOKEN, *_NAMED)),
    ("GET", "/api/drafts/{slug}/comments"): Operation("listComments", (*_TOKEN, *_NAMED)),
    ("POST", "/api/drafts/{slug}/comments"):
        Operation("createComment", (*_TOKEN, *_BODY, 404, 409)),
    ("POST", "/api/drafts/{slug}/comments/{comment_id}/resolve"):
        Operation("resolveComment", (*_TOKEN, *_NAMED, 409)),
    ("PUT", "/api/drafts/{slug}/assignees"):
        Operation("assignReviewers", (*_TOKEN, *_BODY, 404, 409)),
    ("GET", "/api/drafts/{slug}/assignees"): Operation("getAssignees", (*_TOKEN, *_NAMED, 409)),
    ("GET", "/api/me/reviews"): Operation("listMyReviews", _TOKEN),
    ("GET", "/api/schedule"): Operation("listSchedule", _TOKEN),
    ("GET", "/api/releases"): Operation("listReleases", _TOKEN),
    ("GET", "/api/workflows"): Operation("listWorkflows", _TOKEN),
    ("GET", "/api/workflows/{name}"): Operation("getWorkflow", (*_TOKEN, *_NAMED)),
    ("PUT", "/api/workflows/{name}"): Operation("putWorkflow", (*_TOKEN, *_BODY, 409)),
    ("POST", "/api/releases"): Operation("createRelease", (*_TOKEN, *_BODY, 404)),
    ("GET", "/api/releases/{release_id}"): Operation("getRelease", (*_TOKEN, *_NAMED)),
    ("POST", "/api/releases/{release_id}/publish"):
        Operation("publishRelease", (*_TOKEN, *_BODY, 404, 409), optional_body=True),
    ("DELETE", "/api/releases/{release_id}/schedule"):
        Operation("cancelReleaseSchedule", (*_TOKEN, *_NAMED, 409)),
    ("GET", "/api/tokens"): Operation("listTokens", _TOKEN),
    ("POST", "/api/tokens"): Operation("createToken", (*_TOKEN, *_BODY)),
    ("POST", "/api/tokens/{token_id}/revoke"): Operation("revokeToken", (*_TOKEN, *_NAMED)),
    ("GET", "/api/webhooks"): Operation("listWebhooks", _TOKEN),
    ("POST", "/api/webhooks"): Operation("createWebhook", (*_TOKEN, *_BODY)),
    ("GET", "/api/webhooks/{endpoint_id}"): Operation("getWebhook", (*_TOKEN, *_NAMED)),
    ("PATCH", "/api/webhooks/{endpoint_id}"): Operation("updateWebhook", (*_TOKEN, *_BODY, 404)),
    ("DELETE", "/api/webhooks/{endpoint_id}"): Operation("deleteWebhook", (*_TOKEN, *_NAMED)),
    ("GET", "/api/webhooks/{endpoint_id}/deliveries"):
        Operation("listWebhookDeliveries", (*_TOKEN, *_NAMED)),
    ("POST", "/api/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"):
        Operation("redeliverWebhookDelivery", (*_TOKEN, *_NAMED)),
    ("POST", "/api/webhooks/{endpoint_id}/replay"):
        Operation("replayWebhookEvents", (*_TOKEN, *_BODY, 404)),
    ("POST", "/api/webhooks/{endpoint_id}/rotate-secret"):
        Operation("rotateWebhookSecret", (*_TOKEN, *_NAMED)),
}

# A full disk, or a ref another writer holds, can refuse any operation for a moment; and a token
# that is sent is checked wherever it is sent, so an unknown or revoked one is refused (401).
_ALWAYS = (401, 503)
# A body is checked for its nesting before anything else, on every method that may carry one,
# whether or not the route reads it (400).
_WITH_BODY = ("post", "put", "patch")
_SUCCESS_HEADERS = {
    "ETag": "The revision, to send back in If-Match (a write) or If-None-Match (a read)",
    "Location": "Where the new resource is read",
}

_MEANING = {
    304: "Not modified: the representation named in If-None-Match is current",
    400: "A malformed request: JSON, a parameter, a path segment, or nesting too deep",
    401: "No token where the operation needs one, or an unknown or revoked token",
    403: "The token lacks a role the operation needs",
    404: "Nothing by that name",
    409: "A conflict with the current state: the slug exists, or the workflow refuses the action",
    410: "A link or token that was valid once and no longer is",
    412: "If-Match names a revision that is no longer current: read it again",
    413: "The request body is over 1 MiB",
    422: "The body breaks the content model; `field` names where",
    428: "A write without If-Match naming the revision it read",
    429: "Too many votes from this client on this comparison; see Retry-After",
    503: "The store cannot take the request now (full disk, a ref locked by another writer); "
         "`uncertain: true` when part of a write may stand",
}

ERROR = Schema(
    type=OpenAPIType.OBJECT, required=["status", "code", "message"],
    properties={
        "status": Schema(type=OpenAPIType.INTEGER, description="The HTTP status, again"),
        "code": Schema(type=OpenAPIType.STRING, description="A stable machine-readable reason, "
                       "e.g. `stale_revision`"),
        "message": Schema(type=OpenAPIType.STRING, description="What went wrong, for a person"),
        "field": Schema(type=OpenAPIType.STRING,
                        description="The field or parameter at fault, e.g. `tools[0].verdict`"),
    },
    description="Every error the API answers. Some carry more: `allowed` actions, "
                "`retry_after` seconds, `uncertain`.",
)

BEARER = SecurityScheme(type="http", scheme="bearer", description=(
    "A token from `cms token create` (or `POST /api/tokens`), sent as "
    "`Authorization: Bearer <token>`"))


def _error_response(status: int) -> OpenAPIResponse:
    if status == 304:
        return OpenAPIResponse(description=_MEANING[status])
    headers: dict[str, OpenAPIHeader | Reference] = {}
    if status == 401:
        headers["WWW-Authenticate"] = OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING))
    if status == 429:
        headers["Retry-After"] = OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER),
                                               description="Seconds to wait")
    return OpenAPIResponse(
        description=_MEANING[status], headers=headers or None,
        content={"application/json": OpenAPIMediaType(
            schema=Reference(ref="#/components/schemas/Error"))})


def _set_media(responses: dict[str, Any], media: tuple[str, ...]) -> None:
    """The success's media types: JSON keeps the schema the framework made, others are text."""
    for status, response in responses.items():
        if not status.startswith("2") or not isinstance(response, OpenAPIResponse):
            continue
        json = (response.content or {}).get("application/json")
        response.content = {
            kind: json if kind == "application/json" and json is not None
            else OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.OBJECT if kind.endswith("json") else OpenAPIType.STRING))
            for kind in media}


def _set_headers(responses: dict[str, Any], names: tuple[str, ...]) -> None:
    for status, response in responses.items():
        if status.startswith("2") and isinstance(response, OpenAPIResponse):
            response.headers = {**(response.headers or {}), **{
                name: OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING),
                                    description=_SUCCESS_HEADERS[name], required=True)
                for name in names}}


_SLUG_PATTERN = SLUG_RE.replace("\\Z", "$")
_COMMIT_PATTERN = "^[0-9a-f]{4,40}$"  # as Documents.resolve takes it


def _portable(schema: Schema) -> None:
    """Patterns as every client reads them: Python's end of text (``\\Z``) is ``$``."""
    if schema.pattern:
        schema.pattern = schema.pattern.replace("\\Z", "$")
    children: list[Any] = [*(schema.properties or {}).values(), schema.items,
                           *(schema.one_of or []), *(schema.any_of or []), *(schema.all_of or [])]
    for child in children:
        if isinstance(child, Schema):
            _portable(child)


def _present(schema: Schema) -> Schema:
    """A parameter is absent or has a value; the framework's `null` alternative for an optional
    one says nothing a query string can send."""
    if isinstance(schema.type, list) and OpenAPIType.NULL in schema.type:
        types = [kind for kind in schema.type if kind != OpenAPIType.NULL]
        schema.type = types[0] if len(types) == 1 else types
        if schema.enum is not None:
            schema.enum = [value for value in schema.enum if value is not None]
    kept = [branch for branch in schema.one_of or []
            if not (isinstance(branch, Schema) and branch.type == OpenAPIType.NULL)]
    if schema.one_of is None or len(kept) != 1 or not isinstance(kept[0], Schema):
        return schema
    only = kept[0]
    for attribute in ("description", "pattern", "min_length", "max_length", "minimum",
                      "maximum", "default", "examples"):
        if getattr(only, attribute) is None and getattr(schema, attribute) is not None:
            setattr(only, attribute, getattr(schema, attribute))
    return only


def route_template(path: str) -> str:
    """A route as the document writes it: ``{slug}``, not ``{slug:str}``."""
    return path.replace(":str", "")


def apply(document: OpenAPI) -> OpenAPI:
    """Write the contract into the document the framework made."""
    components = document.components if isinstance(document.components, Components) \
        else Components()
    components.schemas = {**(components.schemas or {}), "Error": ERROR}
    restore(components.schemas)
    # The request bodies that refuse unknown fields, by the name the document gives them.
    strict = {name for name, struct in structs_by_name().items()
              if struct.__struct_config__.forbid_unknown_fields}
    for name, schema in components.schemas.items():
        _portable(schema)
        if name in strict:
            schema.additional_properties = False  # unknown fields are refused (422)
    components.security_schemes = {"bearer": BEARER}
    document.components = components
    for path, item in (document.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            contract = OPERATIONS[(method.upper(), route_template(path))]
            operation.operation_id = contract.id
            for parameter in operation.parameters or []:
                if not isinstance(parameter, Parameter):
                    continue
                if parameter.name == "If-Match":
                    # Optional to the framework, so that its absence is the API's own 428.
                    parameter.required = True
                    parameter.schema = Schema(type=OpenAPIType.STRING,
                                              pattern=IF_MATCH_PATTERN.replace("\\Z", "$"),
                                              description="The revision (ETag) you read")
                elif parameter.name == "slug" and parameter.param_in == "path":
                    parameter.schema = Schema(type=OpenAPIType.STRING, pattern=_SLUG_PATTERN,
                                              min_length=3, max_length=120,
                                              description="A comparison's slug, e.g. "
                                                          "`cursor-vs-windsurf`")
                elif parameter.name == "comment_id":
                    parameter.schema = Schema(type=OpenAPIType.STRING,
                                              pattern=COMMENT_ID.replace("\\Z", "$"),
                                              description="A comment's id, e.g. `c_0123456789ab`")
                elif parameter.name == "release_id":
                    parameter.schema = Schema(type=OpenAPIType.STRING,
                                              pattern=RELEASE_ID.replace("\\Z", "$"),
                                              description="A release's id, e.g. `r_0123456789ab`")
                elif parameter.name == "name" and contract.id.endswith("Workflow"):
                    parameter.schema = Schema(type=OpenAPIType.STRING,
                                              pattern=WORKFLOW_NAME_RE.replace("\\Z", "$"),
                                              max_length=40,
                                              description="A workflow's name, e.g. `two-step`")
                elif parameter.name == "commit" or (contract.id == "getComparisonDiff"
                                                     and parameter.name in ("from", "to")):
                    parameter.schema = Schema(type=OpenAPIType.STRING, pattern=_COMMIT_PATTERN,
                                              description="A commit id, full or abbreviated")
                elif isinstance(parameter.schema, Schema):
                    parameter.schema = _present(parameter.schema)
                    _portable(parameter.schema)
            # Public operations take a token too (a token that is sent must be valid).
            operation.security = [{}, {"bearer": []}] if contract.public else [{"bearer": []}]
            responses: dict[str, Any] = {
                status: response for status, response in (operation.responses or {}).items()
                if not status.startswith(("4", "5"))}  # the framework's guesses, in its shape
            statuses = {*contract.statuses, *_ALWAYS, *((400,) if method in _WITH_BODY else ())}
            for status in sorted(statuses):
                responses[str(status)] = _error_response(status)
            if contract.media:
                _set_media(responses, contract.media)
            if contract.headers:
                _set_headers(responses, contract.headers)
            if contract.optional_body and isinstance(operation.request_body, RequestBody):
                operation.request_body.required = False
            operation.responses = dict(sorted(responses.items()))
    return document


class _ContractPlugin(OpenAPIPlugin):
    """Builds the document once per set of workflow definitions in force: a push of new ones
    (by any server) names its actions from the next request for it."""

    def provide_openapi(self) -> OpenAPI:
        self._follow_the_rules()
        return super().provide_openapi()

    def provide_openapi_schema(self) -> dict[str, Any]:
        self._follow_the_rules()
        return super().provide_openapi_schema()

    def _follow_the_rules(self) -> None:
        services = self.app.state.get("services")
        current = services.workflows.in_force() if services is not None else None
        if current is not getattr(self, "_built_for", None):
            self._openapi = None
            self._openapi_schema = None
            self._built_for = current

    def _build_openapi(self) -> OpenAPI:
        document = apply(super()._build_openapi())
        services = self.app.state.get("services")
        if services is not None:
            _name_the_actions(document, [*services.workflows.transitions(), CANCEL])
        return document


def _name_the_actions(document: OpenAPI, actions: list[str]) -> None:
    """The actions a transition takes are the workflow's, known once it is loaded."""
    schemas = document.components.schemas if isinstance(document.components, Components) \
        else {}
    transition = (schemas or {}).get("TransitionIn")
    action = (transition.properties or {}).get("action") \
        if isinstance(transition, Schema) else None
    if isinstance(action, Schema):
        action.enum = actions


def with_contract(config: AppConfig) -> AppConfig:
    """An ``on_app_init`` hook: the document is made lazily, on its first request, as before,
    and then carries the contract."""
    # In place: the framework goes on to call the init hook of each plugin in this very list.
    config.plugins[:] = [_ContractPlugin(plugin.app) if type(plugin) is OpenAPIPlugin
                         else plugin for plugin in config.plugins]
    return config


def registered_under_its_base(app: Litestar) -> None:
    """The framework finds its document's plugin by exact type (``app.openapi_schema``)."""
    plugin = app.plugins.get(_ContractPlugin)
    app.plugins._plugins_by_type[OpenAPIPlugin] = plugin
