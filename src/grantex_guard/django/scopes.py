"""What a class-based view requires, read from `required_scopes` / `required_scopes_map`.

    class Events(APIView):
        required_scopes = ["calendar:read"]                   # every method
        required_scopes_map = {"POST": ["calendar:write"]}    # per method, wins when listed

A method listed in neither is refused (HEAD falls back to GET). Declaring
neither is a configuration error: `required_scopes = []` accepts any grant.
Used by DRF's HasGrantScopes and validated by the `grantex_guard.E005` check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..scopes import Requirement, requirement

__all__ = ["ViewRequirements", "view_requirements"]


@dataclass(frozen=True)
class ViewRequirements:
    default: Requirement | None = None
    by_method: Mapping[str, Requirement] = field(default_factory=dict)

    @property
    def declared(self) -> bool:
        return self.default is not None or bool(self.by_method)

    def for_method(self, method: str) -> Requirement | None:
        """The requirement for `method`, or None when grants may not use it."""
        method = method.upper()
        found = self.by_method.get(method)
        if found is None and method == "HEAD":
            found = self.by_method.get("GET")
        return found if found is not None else self.default


def view_requirements(view: object) -> ViewRequirements:
    """Parse a view's (class or instance) declarations; ValueError/TypeError when malformed.

    Parsing is cached by the core (`requirement`), so calling this per request is cheap.
    """
    default_scopes = getattr(view, "required_scopes", None)
    default = None if default_scopes is None else _parse(default_scopes, "required_scopes")
    scope_map = getattr(view, "required_scopes_map", None)
    if scope_map is None:
        return ViewRequirements(default)
    if not isinstance(scope_map, Mapping):
        raise TypeError(
            f"required_scopes_map must be a dict of method -> scopes, got {type(scope_map).__name__}"
        )
    by_method: dict[str, Requirement] = {}
    for method, scopes in scope_map.items():
        if not isinstance(method, str):
            raise TypeError(f"required_scopes_map keys must be HTTP methods, got {method!r}")
        by_method[method.upper()] = _parse(scopes, f"required_scopes_map[{method!r}]")
    return ViewRequirements(default, by_method)


def _parse(scopes: object, name: str) -> Requirement:
    if isinstance(scopes, (str, bytes)) or not isinstance(scopes, (list, tuple)):
        raise TypeError(f"{name} must be a list of scope strings, got {scopes!r}")
    try:
        return requirement(tuple(scopes))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
