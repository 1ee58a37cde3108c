"""@require_grant and @require_scopes for function, class-based and async views.

    @require_scopes("calendar:read")
    def events(request): ...

    @require_scopes("payments:initiate:max_1000")
    async def pay(request): ...            # verified with verify_async

    @method_decorator(require_grant, name="dispatch")
    class Profile(View): ...

    @require_scopes("calendar:read", revocation=True)   # always ask Grantex (needs API_KEY)
    def export(request): ...

The requirement is parsed when the decorator is applied, so a malformed scope
fails at import. Behind GrantexMiddleware the grant it verified is reused;
without it the decorator authenticates the request itself.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers

from ..errors import GuardError
from ..grant import Grant
from ..revocation import route_revocation
from ..scopes import Requirement
from .authenticate import (
    AUTHORIZATION_VARY,
    attach_grant,
    attached_grant,
    confirm_not_revoked,
    confirm_not_revoked_async,
    error_json_response,
    verify_request,
    verify_request_async,
)

__all__ = ["require_grant", "require_scopes"]

P = ParamSpec("P")
Request = TypeVar("Request", bound=HttpRequest)
Response = TypeVar("Response", bound=HttpResponseBase)

SyncView = Callable[Concatenate[Request, P], Response]
AsyncView = Callable[Concatenate[Request, P], Coroutine[Any, Any, Response]]


class _ViewGuard:
    """Wraps views so they run only for a grant that meets `required`."""

    def __init__(self, required: Requirement, revocation: bool | None = None) -> None:
        self.required = required
        self.revocation = revocation

    @overload
    def __call__(
        self, view: AsyncView[Request, P, Response]
    ) -> AsyncView[Request, P, Response | JsonResponse]: ...

    @overload
    def __call__(
        self, view: SyncView[Request, P, Response]
    ) -> SyncView[Request, P, Response | JsonResponse]: ...

    def __call__(self, view: Callable[..., Any]) -> Callable[..., Any]:
        if iscoroutinefunction(view):
            return self._wrap_async(view)
        return self._wrap_sync(view)

    def _wrap_sync(self, view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                grant = attached_grant(request)
                if grant is None:
                    attach_grant(request, verify_request(request, self.required,
                                                         revocation=self.revocation))
                else:
                    self._check(grant)
                    if self.revocation:
                        confirm_not_revoked(request, grant)
                response = view(request, *args, **kwargs)
            except GuardError as error:
                return error_json_response(error)
            if inspect.iscoroutine(response):
                response.close()
                raise TypeError(
                    f"{view.__qualname__} returned a coroutine: on an async class-based view "
                    "decorate the async handler (method_decorator(..., name='get')), not "
                    "dispatch, so the token is verified without blocking the event loop."
                )
            patch_vary_headers(response, AUTHORIZATION_VARY)
            return response

        return _csrf_exempt(guarded)

    def _wrap_async(
        self, view: Callable[..., Coroutine[Any, Any, HttpResponseBase]]
    ) -> Callable[..., Coroutine[Any, Any, HttpResponseBase]]:
        @functools.wraps(view)
        async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                grant = attached_grant(request)
                if grant is None:
                    attach_grant(request, await verify_request_async(request, self.required,
                                                                     revocation=self.revocation))
                else:
                    self._check(grant)
                    if self.revocation:
                        await confirm_not_revoked_async(request, grant)
                response = await view(request, *args, **kwargs)
            except GuardError as error:
                return error_json_response(error)
            patch_vary_headers(response, AUTHORIZATION_VARY)
            return response

        return _csrf_exempt(guarded)

    def _check(self, grant: Grant) -> None:
        if self.required:
            self.required.check(grant.scope_set)


_F = TypeVar("_F", bound=Callable[..., Any])


def _csrf_exempt(view: _F) -> _F:
    # A guarded view runs only for requests carrying a grant token in the Authorization
    # header, which a browser never attaches by itself: CSRF cannot reach it.
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view


def require_scopes(*scopes: str, any_of: Iterable[str] = (),
                   revocation: bool | None = None) -> _ViewGuard:
    """Decorator: the request needs a valid grant holding every scope (and one of `any_of`).

    Malformed scope strings raise ValueError here, at import time. `revocation=True`
    confirms with Grantex on every request that the grant is not revoked, whatever
    the policy (it needs API_KEY, checked on first use: the Guard is built lazily);
    `revocation=False` is refused here, as a route may only tighten the policy.
    """
    return _ViewGuard(Requirement.parse(scopes, any_of), route_revocation(revocation))


@overload
def require_grant(view: AsyncView[Request, P, Response]
                  ) -> AsyncView[Request, P, Response | JsonResponse]: ...


@overload
def require_grant(view: SyncView[Request, P, Response]
                  ) -> SyncView[Request, P, Response | JsonResponse]: ...


def require_grant(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: the request needs a valid grant token, whatever its scopes."""
    return _ViewGuard(Requirement())(view)
