"""`python -m grantex_guard inspect`: one line per check, a verdict, exit codes 0/1/2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from grantex_guard.__main__ import main
from grantex_guard.testing import LocalIssuer

from .conftest import API
from .fake_grantex_api import API_KEY, FakeGrantexAPI


@pytest.fixture
def served() -> Iterator[tuple[LocalIssuer, str]]:
    issuer = LocalIssuer()
    with issuer.serve() as jwks_url:
        yield issuer, jwks_url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["inspect", *args])
    return code, capsys.readouterr().out


def test_a_valid_token_exits_0_with_a_line_per_check(served: tuple[LocalIssuer, str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    issuer, jwks_url = served
    token = issuer.mint(["calendar:read", "payments:initiate:max_500"], audience=API)

    code, out = run(capsys, token, "--issuer", issuer.issuer, "--jwks-uri", jwks_url,
                    "--audience", API, "--scope", "calendar:read")

    assert code == 0
    for check in ("header", "key", "signature", "expiry", "issuer", "claims", "audience",
                  "delegation", "required"):
        assert any(line.startswith(f"ok   {check}") for line in out.splitlines()), check
    assert "payments:initiate:max_500 (up to 500)" in out
    assert out.strip().endswith("verdict: VALID")


def test_an_expired_token_exits_1_and_says_how_long_ago(served: tuple[LocalIssuer, str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    issuer, jwks_url = served
    token = issuer.mint(audience=API, issued_at=issuer.clock() - 4 * 3600, expires_in=3600)

    code, out = run(capsys, token, "--issuer", issuer.issuer, "--jwks-uri", jwks_url,
                    "--audience", API)

    assert code == 1
    assert "FAIL expiry       TOKEN_EXPIRED: token expired 3 h ago" in out


def test_every_failing_check_is_reported_in_one_run(served: tuple[LocalIssuer, str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    issuer, jwks_url = served
    token = issuer.mint(["email:send"], audience="https://other.example",
                        issued_at=issuer.clock() - 7200, expires_in=60)

    code, out = run(capsys, token, "--issuer", issuer.issuer, "--jwks-uri", jwks_url,
                    "--audience", API, "--scope", "calendar:read")

    assert code == 1
    failed = [line.split()[1] for line in out.splitlines() if line.startswith("FAIL")]
    assert failed == ["expiry", "audience", "required"]


def test_an_unknown_kid_lists_the_failure(served: tuple[LocalIssuer, str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    issuer, jwks_url = served
    code, out = run(capsys, issuer.mint(kid="grantex-1999-01"), "--issuer", issuer.issuer,
                    "--jwks-uri", jwks_url)
    assert code == 1
    assert "grantex-1999-01" in out


def test_an_unreachable_jwks_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    issuer = LocalIssuer()
    code, out = run(capsys, issuer.mint(), "--issuer", issuer.issuer, "--jwks-uri",
                    "http://127.0.0.1:9/.well-known/jwks.json")
    assert code == 2
    assert "verdict: UNCHECKED" in out


def test_without_an_issuer_the_tokens_own_is_used_and_flagged(
        served: tuple[LocalIssuer, str], capsys: pytest.CaptureFixture[str]) -> None:
    issuer, jwks_url = served
    own_issuer = jwks_url.removesuffix("/.well-known/jwks.json")
    code, out = run(capsys, issuer.mint(claims={"iss": own_issuer}), "--allow-http")
    assert code == 0
    assert f"warn issuer       using the token's own iss '{own_issuer}'" in out


def test_the_issuer_derived_from_the_jwks_uri_is_checked(
        served: tuple[LocalIssuer, str], capsys: pytest.CaptureFixture[str]) -> None:
    issuer, jwks_url = served
    code, out = run(capsys, issuer.mint(), "--jwks-uri", jwks_url)
    assert code == 1
    assert "FAIL issuer" in out


def test_json_output(served: tuple[LocalIssuer, str], capsys: pytest.CaptureFixture[str]) -> None:
    issuer, jwks_url = served
    code, out = run(capsys, issuer.mint(), "--issuer", issuer.issuer, "--jwks-uri", jwks_url,
                    "--json")
    report = json.loads(out)
    assert code == report["exit_code"] == 0
    assert report["verdict"] == "valid"
    assert {"name": "signature", "outcome": "ok", "message": "valid (RS256)"} in report["checks"]


def test_the_token_can_come_from_stdin(served: tuple[LocalIssuer, str],
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    issuer, jwks_url = served
    monkeypatch.setattr(sys, "stdin", io.StringIO(issuer.mint() + "\n"))
    code, _ = run(capsys, "-", "--issuer", issuer.issuer, "--jwks-uri", jwks_url)
    assert code == 0


def test_garbage_is_invalid_not_a_crash(served: tuple[LocalIssuer, str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    issuer, jwks_url = served
    code, out = run(capsys, "not.a.token", "--issuer", issuer.issuer, "--jwks-uri", jwks_url)
    assert code == 1
    assert "verdict: INVALID" in out


def test_the_module_runs_as_a_program() -> None:
    result = subprocess.run([sys.executable, "-m", "grantex_guard", "inspect", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "Exit code: 0 valid, 1 invalid, 2 could not check" in result.stdout


@pytest.mark.parametrize(("answer", "code", "line"), [
    ("active", 0, "ok   revocation"),
    ("revoked", 1, "FAIL revocation"),
])
def test_an_api_key_adds_the_grants_status_from_grantex(served: tuple[LocalIssuer, str],
                                                        capsys: pytest.CaptureFixture[str],
                                                        answer: str, code: int, line: str) -> None:
    issuer, jwks_url = served
    token = issuer.mint(["calendar:read"], audience=API)
    with FakeGrantexAPI() as api:
        api.answer = answer
        exit_code, out = run(capsys, token, "--issuer", issuer.issuer, "--jwks-uri", jwks_url,
                             "--audience", API, "--api-key", API_KEY, "--api-base-url", api.url)
    assert exit_code == code
    assert line in out
    assert API_KEY not in out


def test_an_unreachable_grantex_api_exits_2(served: tuple[LocalIssuer, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    issuer, jwks_url = served
    token = issuer.mint(["calendar:read"], audience=API)
    exit_code, out = run(capsys, token, "--issuer", issuer.issuer, "--jwks-uri", jwks_url,
                         "--audience", API, "--api-key", API_KEY, "--api-base-url", "http://127.0.0.1:9")
    assert exit_code == 2
    assert "revocation" in out


def test_the_readme_sample_has_the_layout_and_checks_of_a_real_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    sample = readme.split("$ grantex-guard inspect", 1)[1].split("```", 1)[0].splitlines()[1:]
    issuer = LocalIssuer(token_format="v1")
    token = issuer.mint(["calendar:read", "payments:initiate:max_500"], audience=API,
                        issued_at=issuer.clock() - 4 * 3600, expires_in=3600)
    with issuer.serve() as jwks_url:
        code, out = run(capsys, token, "--issuer", issuer.issuer, "--jwks-uri", jwks_url,
                        "--audience", API, "--scope", "calendar:read")
    real = out.rstrip().splitlines()
    assert code == 1
    assert [line[:18] for line in real] == [line[:18] for line in sample]
    assert real[4].startswith("FAIL expiry       TOKEN_EXPIRED: token expired 3 h ago")
