"""The LocalIssuer the Django tests trust, with the URL its JWKS is served at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grantex_guard.testing import LocalIssuer

API = "https://api.example.com"


@dataclass(frozen=True)
class ServedIssuer:
    issuer: LocalIssuer
    jwks_uri: str

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {"ISSUER": self.issuer.issuer, "JWKS_URI": self.jwks_uri, "AUDIENCE": API,
                **extra}
