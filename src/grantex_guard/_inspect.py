"""`grantex-guard inspect`: run each step of the pipeline on one token and say what it found.

Every step calls the Guard's own code (no rule is re-implemented here); a
failing step is reported and the next ones still run where they can, so one
run explains everything that is wrong with a token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import GrantexUnavailable, GuardError
from .grant import Grant
from .jose import b64url_decode, decode_json_object, split_compact
from .scopes import requirement
from .verifier import Guard

__all__ = ["Check", "Report", "inspect_token"]

Outcome = Literal["ok", "fail", "warn", "info", "unchecked"]
_MARKS = {"ok": "ok  ", "fail": "FAIL", "warn": "warn", "info": "    ", "unchecked": "??  "}


@dataclass
class Check:
    name: str
    outcome: Outcome
    message: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    verdict: Literal["valid", "invalid", "unchecked"] = "unchecked"

    @property
    def exit_code(self) -> int:
        return {"valid": 0, "invalid": 1, "unchecked": 2}[self.verdict]

    def add(self, name: str, outcome: Outcome, message: str) -> None:
        self.checks.append(Check(name, outcome, message))

    def text(self) -> str:
        lines = [f"{_MARKS[c.outcome]} {c.name:<12} {c.message}" for c in self.checks]
        lines.append(f"verdict: {self.verdict.upper()}")
        return "\n".join(lines)

    def json(self) -> str:
        return json.dumps({"verdict": self.verdict, "exit_code": self.exit_code,
                           "checks": [asdict(check) for check in self.checks]}, indent=2)


def duration(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _unverified_part(token: str, index: int) -> dict[str, Any] | None:
    try:
        return decode_json_object(b64url_decode(token.split(".")[index]))
    except (ValueError, IndexError):
        return None


class _Inspection:
    def __init__(self, token: str, guard: Guard, now: float, report: Report) -> None:
        self.token, self.guard, self.now, self.report = token, guard, now, report
        self.failed = False

    def step(self, name: str, action: Callable[[], str | None], passed: str = "") -> bool:
        """Run one pipeline step; record ok / fail (client's fault) / unchecked (ours)."""
        try:
            message = action() or passed
        except GrantexUnavailable as exc:
            self.report.add(name, "unchecked", exc.detail)
            self.report.verdict = "unchecked"
            raise
        except GuardError as exc:
            self.report.add(name, "fail", f"{exc.code}: {exc.detail}")
            self.failed = True
            return False
        self.report.add(name, "ok", message)
        return True

    def run(self, required_scopes: Sequence[str]) -> None:
        guard = self.guard
        compact, kid, alg = guard._read_header(self.token)
        self.report.add("header", "ok", f"alg {alg}, kid {kid!r}")
        key = guard.keys.get_key(kid, alg)
        self.report.add("key", "ok", f"{key.alg} key {key.kid!r} found in {guard.config.jwks_uri}")
        claims = guard._check_signature(compact, key)
        self.report.add("signature", "ok", f"valid ({key.alg})")
        times: tuple[int, int] | None = None

        def check_times() -> str:
            nonlocal times
            times = guard._check_times(claims, self.now)
            issued, expires = times
            return (f"issued {duration(self.now - issued)} ago, "
                    f"expires in {duration(expires - self.now)}")

        if not self.step("expiry", check_times):
            self._explain_times(claims)
        self.step("issuer", lambda: guard._check_issuer(claims), f"{claims.get('iss')!r}")
        issued, expires = times or (_int_claim(claims, "iat"), _int_claim(claims, "exp"))
        grant: Grant | None = None

        def read() -> str:
            nonlocal grant
            grant = guard._read_claims(claims, issued, expires)
            return (f"{grant.token_format} token: principal {grant.principal_id}, agent "
                    f"{grant.agent_did}, grant {grant.grant_id}")

        if self.step("claims", read) and grant is not None:
            self._grant_checks(grant, required_scopes)

    def _explain_times(self, claims: dict[str, Any]) -> None:
        issued = claims.get("iat")
        if isinstance(issued, int) and issued > self.now:
            self.report.add("", "info", f"issued {duration(issued - self.now)} in the future: "
                            "the issuer's clock or this machine's is off")

    def _grant_checks(self, grant: Grant, required_scopes: Sequence[str]) -> None:
        guard = self.guard
        self.step("audience", lambda: guard.check_audience(grant),
                  f"aud {list(grant.audience) or 'absent'}")
        chain = " <- ".join((grant.agent_did, *grant.delegation_chain))
        self.step("delegation", lambda: guard._check_delegation(grant),
                  f"depth {grant.delegation_depth}: {chain}")
        for scope in grant.scopes:
            limit = grant.scope_set.limit(scope.rsplit(":", 1)[0]) if ":max_" in scope else None
            note = f" (up to {limit})" if limit is not None else ""
            self.report.add("scope", "info", f"{scope}{note}")
        if grant.key_thumbprint:
            self.report.add("binding", "info", f"bound to key {grant.key_thumbprint} (cnf.jkt): "
                            "requests need a DPoP proof")
        if required_scopes:
            required = requirement(tuple(required_scopes))
            self.step("required", lambda: required.check(grant.scope_set),
                      f"covers {', '.join(required_scopes)}")
        if guard.config.api_key:
            self.step("revocation", lambda: guard.confirm_not_revoked(grant, self.token),
                      f"active: confirmed with Grantex ({guard.config.revocation_source})")


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    return value if type(value) is int else 0


def inspect_token(token: str, *, issuer: str | None = None, jwks_uri: str | None = None,
                  audience: str | None = None, scopes: Sequence[str] = (),
                  now: float | None = None, **options: Any) -> Report:
    """Diagnose `token`. Without issuer/jwks_uri the token's own `iss` is used (flagged)."""
    report = Report()
    token = token.strip()
    header, payload = _unverified_part(token, 0), _unverified_part(token, 1)
    report.add("decoded", "info" if header and payload else "fail",
               f"header {json.dumps(header)}" if header else "the token does not decode as a JWT")
    if not issuer and not jwks_uri:
        untrusted = payload.get("iss") if payload else None
        if not isinstance(untrusted, str):
            report.add("issuer", "unchecked", "pass --issuer or --jwks-uri (the token names none)")
            return report
        issuer = untrusted
        report.add("issuer", "warn", f"using the token's own iss {issuer!r}: pass --issuer to check it")
    clock_now = time.time() if now is None else now
    try:
        guard = Guard(issuer=issuer, jwks_uri=jwks_uri, audience=audience,
                      clock=lambda: clock_now, token_cache_size=0, **options)
    except ValueError as exc:
        report.add("options", "unchecked", str(exc))
        return report
    inspection = _Inspection(token, guard, clock_now, report)
    try:
        split_compact(token, guard.config.max_token_bytes)
        inspection.run(scopes)
    except GrantexUnavailable:
        return report
    except GuardError as exc:
        report.add("token", "fail", f"{exc.code}: {exc.detail}")
        inspection.failed = True
    finally:
        guard.close()
    report.verdict = "invalid" if inspection.failed else "valid"
    return report
