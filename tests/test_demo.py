"""`python -m grantex_guard demo`: a real server whose printed curl commands give what they say."""

from __future__ import annotations

import itertools
import shlex
import subprocess
import sys
import time

import httpx


def _requests(output: str) -> list[tuple[int, list[str]]]:
    """(expected status, curl argv) for each "# <status>: ..." block the demo printed."""
    lines = output.splitlines()
    found = []
    for index, line in enumerate(lines):
        if line.startswith("# ") and line[2:5].isdigit():
            found.append((int(line[2:5]), shlex.split(lines[index + 1])))
    return found


def _send(command: list[str]) -> httpx.Response:
    headers = dict(value.split(": ", 1) for flag, value in itertools.pairwise(command) if flag == "-H")
    body = command[command.index("-d") + 1] if "-d" in command else None
    method = "POST" if body is not None else "GET"
    return httpx.request(method, command[-1], headers=headers, content=body, timeout=10)


def test_the_demo_serves_every_outcome_it_prints() -> None:
    process = subprocess.Popen([sys.executable, "-m", "grantex_guard", "demo", "--port", "0",
                                "--duration", "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        output = ""
        deadline = time.monotonic() + 30
        while "Stopping in" not in output and time.monotonic() < deadline:
            output += process.stdout.readline()
        printed = _requests(output)
        assert [status for status, _ in printed] == [200, 201, 401, 403, 403, 403]
        for status, command in printed:
            assert command[0] == "curl"
            response = _send(command)
            assert response.status_code == status, (command[-1], response.text)
            if status >= 400:
                assert response.json()["error"] in {"TOKEN_EXPIRED", "SCOPE_INSUFFICIENT",
                                                     "DELEGATION_DENIED"}
                assert "WWW-Authenticate" in response.headers
    finally:
        process.terminate()
        process.wait(timeout=10)
