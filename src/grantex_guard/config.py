"""GuardConfig: every option of a Guard, validated once at construction."""

from __future__ import annotations

import difflib
import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from .claims import MAX_PROTOCOL_DEPTH
from .revocation import DEFAULT_HIGH_STAKES

if TYPE_CHECKING:  # loaded only when a client is passed: `import grantex_guard` stays light
    import httpx

    from .dpop import ReplayStore
    from .revocation import RevocationStore

__all__ = ["SUPPORTED_ALGORITHMS", "GuardConfig"]

SUPPORTED_ALGORITHMS = ("RS256", "ES256")
JWKS_PATH = "/.well-known/jwks.json"
HOSTED_ISSUER = "https://grantex.dev"
HOSTED_JWKS_URI = "https://api.grantex.dev/.well-known/jwks.json"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(name: str, url: object, *, fetched: bool, allow_http: bool) -> str:
    if not isinstance(url, str):
        raise ValueError(f"{name} must be a URL string, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{name} must be an absolute http(s) URL, got {url!r}")
    if parts.fragment or parts.username or parts.password:
        raise ValueError(f"{name} must not carry a fragment or credentials: {url!r}")
    if fetched and parts.scheme == "http" and not (allow_http or _is_loopback(parts.hostname)):
        raise ValueError(
            f"{name} {url!r} is plain http on a non-loopback host: keys fetched that way can "
            "be swapped in transit. Use https, or pass allow_http=True for a private network."
        )
    return url


def _derive(issuer: str | None, jwks_uri: str | None) -> tuple[str, str]:
    if issuer and jwks_uri:
        return issuer, jwks_uri
    if issuer:
        return issuer, HOSTED_JWKS_URI if issuer == HOSTED_ISSUER else issuer.rstrip("/") + JWKS_PATH
    if jwks_uri:
        if jwks_uri == HOSTED_JWKS_URI:
            return HOSTED_ISSUER, jwks_uri
        if not jwks_uri.endswith(JWKS_PATH):
            raise ValueError(
                f"cannot derive the issuer from jwks_uri {jwks_uri!r} (it does not end in "
                f"{JWKS_PATH}): pass issuer= too"
            )
        return jwks_uri[: -len(JWKS_PATH)], jwks_uri
    raise ValueError("pass issuer= or jwks_uri= (or both): grantex-guard needs to know whom to trust")


def _number(name: str, value: object, *, minimum: float, maximum: float | None = None,
            integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


@dataclass(frozen=True)
class GuardConfig:
    """The options of a Guard. Build it through `Guard(...)` or `Guard.from_settings`."""

    issuer: str | None = None
    jwks_uri: str | None = None
    audience: str | Sequence[str] | None = None
    audience_check: Literal["on", "off"] = "on"
    algorithms: Sequence[str] = SUPPORTED_ALGORITHMS
    legacy_claims: bool = True
    leeway: float = 30
    max_delegation_depth: int = 3
    max_token_bytes: int = 8192
    clock: Callable[[], float] | None = None
    jwks_ttl: float = 600
    jwks_refresh_cooldown: float = 30
    jwks_max_stale: float = 3600
    http_timeout: float = 5
    jwks_max_bytes: int = 65536
    jwks_max_keys: int = 128
    token_cache_size: int = 10_000
    http_client: httpx.Client | None = field(default=None, repr=False)
    async_http_client: httpx.AsyncClient | None = field(default=None, repr=False)
    allow_http: bool = False
    realm: str = "grantex"
    resource: str | None = None
    proof_of_possession: Literal["enforce", "require", "warn", "off"] = "enforce"
    dpop_max_age: float = 300
    dpop_leeway: float = 10
    replay_store: ReplayStore | None = field(default=None, repr=False)
    public_base_url: str | None = None
    trust_forwarded_headers: bool = False
    api_key: str | None = field(default=None, repr=False)
    api_base_url: str | None = None
    revocation_check: Literal["never", "high_stakes", "always"] | None = None
    revocation_source: Literal["status", "grants_verify", "tokens_verify", "feed"] = "status"
    revocation_cache_ttl: float = 60
    high_stakes_scopes: Sequence[str] = DEFAULT_HIGH_STAKES
    fail_open: bool = False
    revocation_store: RevocationStore | None = field(default=None, repr=False)
    feed_max_staleness: float = 5
    feed_fallback: Literal["online"] | None = None

    def __post_init__(self) -> None:
        issuer, jwks_uri = _derive(self.issuer, self.jwks_uri)
        set_ = object.__setattr__
        set_(self, "issuer", _check_url("issuer", issuer, fetched=False, allow_http=True))
        set_(self, "jwks_uri", _check_url("jwks_uri", jwks_uri, fetched=True, allow_http=self.allow_http))
        set_(self, "audience", self._audiences())
        set_(self, "algorithms", self._algorithms())
        set_(self, "clock", self.clock or time.time)
        self._check_numbers()
        self._check_kinds()

    def _audiences(self) -> tuple[str, ...]:
        audience = self.audience
        if audience is None:
            return ()
        values = (audience,) if isinstance(audience, str) else tuple(audience)
        if not values or not all(isinstance(value, str) and value for value in values):
            raise ValueError(f"audience must be a non-empty string or list of strings, got {audience!r}")
        return values

    def _algorithms(self) -> tuple[str, ...]:
        algorithms = self.algorithms
        if isinstance(algorithms, str):
            raise ValueError(f"algorithms must be a list such as ({algorithms!r},), not a string")
        chosen = tuple(algorithms)
        unsupported = [alg for alg in chosen if alg not in SUPPORTED_ALGORITHMS]
        if unsupported or not chosen:
            raise ValueError(
                f"algorithms must be a non-empty subset of {SUPPORTED_ALGORITHMS} (Grantex signs "
                f"with those only), got {chosen!r}"
            )
        return chosen

    def _check_numbers(self) -> None:
        _number("leeway", self.leeway, minimum=0, maximum=300)
        _number("max_delegation_depth", self.max_delegation_depth, minimum=0,
                maximum=MAX_PROTOCOL_DEPTH, integer=True)
        _number("max_token_bytes", self.max_token_bytes, minimum=256, maximum=1 << 20, integer=True)
        _number("jwks_ttl", self.jwks_ttl, minimum=1)
        _number("jwks_refresh_cooldown", self.jwks_refresh_cooldown, minimum=0)
        _number("jwks_max_stale", self.jwks_max_stale, minimum=0)
        _number("http_timeout", self.http_timeout, minimum=0.001, maximum=120)
        _number("jwks_max_bytes", self.jwks_max_bytes, minimum=1024, integer=True)
        _number("jwks_max_keys", self.jwks_max_keys, minimum=1, integer=True)
        _number("token_cache_size", self.token_cache_size, minimum=0, integer=True)
        _number("dpop_max_age", self.dpop_max_age, minimum=1, maximum=3600)
        _number("dpop_leeway", self.dpop_leeway, minimum=0, maximum=300)

    def _check_kinds(self) -> None:
        if self.proof_of_possession not in ("enforce", "require", "warn", "off"):
            raise ValueError(
                'proof_of_possession must be "enforce", "require", "warn" or "off", '
                f"got {self.proof_of_possession!r}"
            )
        store = self.replay_store
        if store is not None and not (hasattr(store, "first_use") and hasattr(store, "first_use_async")):
            raise ValueError("replay_store must provide first_use() and first_use_async()")
        if self.audience_check not in ("on", "off"):
            raise ValueError(f'audience_check must be "on" or "off", got {self.audience_check!r}')
        if self.public_base_url is not None:
            _check_url("public_base_url", self.public_base_url, fetched=False, allow_http=True)
        if self.api_base_url is not None:
            _check_url("api_base_url", self.api_base_url, fetched=True, allow_http=self.allow_http)
        for name in ("legacy_claims", "allow_http", "trust_forwarded_headers", "fail_open"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False")
        if not callable(self.clock):
            raise ValueError("clock must be a zero-argument callable returning Unix seconds")
        if not isinstance(self.realm, str) or not self.realm or '"' in self.realm:
            raise ValueError("realm must be a non-empty string without quotes")
        if self.resource is not None:
            _check_url("resource", self.resource, fetched=False, allow_http=True)
        if self.http_client is not None or self.async_http_client is not None:
            self._check_clients()

    def _check_clients(self) -> None:
        import httpx

        if self.http_client is not None and not isinstance(self.http_client, httpx.Client):
            raise ValueError("http_client must be an httpx.Client")
        if self.async_http_client is not None and not isinstance(
            self.async_http_client, httpx.AsyncClient
        ):
            raise ValueError("async_http_client must be an httpx.AsyncClient")

    @property
    def now(self) -> Callable[[], float]:
        assert self.clock is not None  # set in __post_init__
        return self.clock

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def options_from_settings(cls, settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """Map `{"ISSUER": ..., "JWKS_URI": ...}` to keyword options; unknown keys are errors.

        With `prefix` (Flask's "GRANTEX_"), only keys starting with it are read,
        and errors name the key as written.
        """
        known = cls.option_names()
        options: dict[str, Any] = {}
        for key, value in settings.items():
            if not isinstance(key, str) or not key.startswith(prefix):
                if prefix:
                    continue
                raise ValueError(f"unknown grantex-guard setting {key!r}")
            name = key[len(prefix):].lower()
            if key != key.upper() or name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                suggestion = f" (did you mean {(prefix + hint[0]).upper()!r}?)" if hint else ""
                raise ValueError(f"unknown grantex-guard setting {key!r}{suggestion}")
            options[name] = value
        return options
