"""The Litestar application: routes, authentication, error handling and OpenAPI."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Litestar, MediaType, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp
from msgspec import Meta, Struct

from ..config import Settings
from ..errors import CmsError
from .admin import TokensController
from .audit import ComparisonAuditController, RepositoryAuditController
from .auth import TokenAuthentication
from .comments import AssignmentController, CommentsController, my_reviews
from .contract import registered_under_its_base, with_contract
from .drafts import DraftsController
from .errors import handle_cms_error, handle_http, handle_unexpected, handle_validation
from .fast_lists import FastLists
from .frontend import feed_atom, feed_json, read_preview, sync_published
from .git_hook import git_hook
from .head import HeadAsGet
from .http import MAX_REQUEST_BYTES
from .json_depth import JsonDepthLimit
from .params import ServicesDep
from .public import PublishedController, VotesController, fold_votes
from .releases import ReleasesController
from .response_cache import PublicResponseCache
from .schedule import list_schedule
from .services import Services, build_services
from .strict_input import strict_input
from .verdict_changes import PublishedVerdictsController
from .webhooks import WebhooksController
from .workflows import WorkflowsController


class Health(Struct):
    status: str
    published: int
    head: str | None
    # False while comparisons are still being decoded after start-up; list queries wait for it.
    index_ready: bool
    search_ready: Annotated[bool, Meta(description=(
        "False while the bitmaps of words many comparisons hold are taken in or made after a "
        "start, and the newest comparisons read for them (seconds at 100,000 comparisons); "
        "searches are answered meanwhile, more slowly"))]


@get("/health", sync_to_thread=False, tags=["health"], media_type=MediaType.JSON)
def health(services: ServicesDep) -> Health:
    services.index.refresh()
    return Health(status="ok", published=len(services.index), head=services.index.head,
                  index_ready=services.index.ready, search_ready=services.index.search_ready)


def create_app(settings: Settings, services: Services | None = None) -> Litestar:
    built = services or build_services(settings)

    def provide_services(state: State) -> Services:
        return state.services  # type: ignore[no-any-return]

    # A read-only replica serves the delivery API, public and unauthenticated, and runs
    # nothing that writes (the outbox, the vote folder, recovery, the scheduler).
    replica = settings.read_only
    delivery: list[Any] = [health, PublishedController, PublishedVerdictsController,
                           sync_published, feed_atom, feed_json, git_hook]
    writing: list[Any] = [
        VotesController, fold_votes, read_preview,
        ComparisonAuditController, RepositoryAuditController, DraftsController,
        CommentsController, AssignmentController, my_reviews, list_schedule,
        ReleasesController, WorkflowsController, TokensController, WebhooksController]
    authentication = [] if replica else [
        DefineMiddleware(TokenAuthentication, exclude=["^/schema"], exclude_http_methods=[])]
    app = Litestar(
        route_handlers=delivery if replica else [*delivery, *writing],
        on_startup=[lambda: built.index.start(), lambda: built.maintenance.start(),
                    lambda: _follow(built, start=True),
                    *([] if replica else [
                        lambda: built.webhooks.start(), lambda: built.vote_folder.start(),
                        lambda: built.recovery.start(), lambda: built.scheduler.start()])],
        # The vote folder first: a fold in flight still reaches the webhook outbox's listener.
        on_shutdown=[lambda: _follow(built, start=False),
                     lambda: built.scheduler.stop(), lambda: built.recovery.stop(),
                     lambda: built.vote_folder.stop(),
                     lambda: built.webhooks.stop(), lambda: built.tokens.close(),
                     lambda: built.previews.close(),
                     lambda: built.index.close(),
                     lambda: built.instances.close()],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        middleware=[JsonDepthLimit(), *authentication],
        exception_handlers={
            CmsError: handle_cms_error,
            ValidationException: handle_validation,
            HTTPException: handle_http,
            Exception: handle_unexpected,
        },
        state=State({"services": built}),
        request_max_body_size=MAX_REQUEST_BYTES,
        openapi_config=OpenAPIConfig(
            title="Comparisons CMS", version="0.1.0", path="/schema",
            description="A git-backed headless CMS for AI tool comparisons.",
        ),
        on_app_init=[with_contract],
        before_request=strict_input,
        debug=False,
    )
    registered_under_its_base(app)
    app.asgi_handler = HeadAsGet(app.asgi_handler, {
        route.path_format: set(route.methods) for route in app.routes
        if isinstance(route, HTTPRoute)})
    # The response cache answers before anything else runs, routing and the exception layer
    # included: a repeated public read then costs what a bare ASGI app's answer does.
    cache = PublicResponseCache(built)
    app.state.response_cache = cache
    # Behind it, lists and searches it has not kept are answered without the routing either.
    lists = FastLists(built)
    app.state.fast_lists = lists
    app.state.routed = app.asgi_handler
    app.asgi_handler = cache.wrapping(lists.wrapping(app.asgi_handler))
    return app


def served(app: Litestar) -> ASGIApp:
    """The app as the server runs it: its response cache and its lists moved from inside the
    framework to in front of it, so that a repeated public read or a search does not enter it
    at all. The app is left without their layers: it is to be run this way only."""
    cache: PublicResponseCache = app.state.response_cache
    lists: FastLists = app.state.fast_lists
    app.asgi_handler = app.state.routed
    return cache.wrapping(lists.wrapping(app))


def _follow(services: Services, *, start: bool) -> None:
    if services.follower is not None:
        if start:
            services.follower.start()
        else:
            services.follower.stop()


def app_from_environment() -> Any:
    from ..config import load_settings

    return served(create_app(load_settings()))
