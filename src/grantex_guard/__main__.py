"""Command line: `python -m grantex_guard inspect TOKEN` and `python -m grantex_guard demo`.

Also installed as the `grantex-guard` console script.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any


def _inspect(args: argparse.Namespace) -> int:
    from ._inspect import inspect_token

    token = sys.stdin.read() if args.token == "-" else args.token
    report = inspect_token(token, issuer=args.issuer, jwks_uri=args.jwks_uri,
                           audience=args.audience, scopes=args.scope or (), now=args.at,
                           max_delegation_depth=args.max_delegation_depth,
                           **_online_options(args),
                           **({"allow_http": True} if args.allow_http else {}))
    print(report.json() if args.json else report.text())
    return report.exit_code


def _online_options(args: argparse.Namespace) -> dict[str, Any]:
    """With an API key (--api-key or GRANTEX_API_KEY) the grant's status is asked of Grantex."""
    api_key = args.api_key or os.environ.get("GRANTEX_API_KEY") or None
    if api_key is None:
        return {}
    options: dict[str, Any] = {"api_key": api_key, "revocation_check": "always"}
    if args.api_base_url:
        options["api_base_url"] = args.api_base_url
    return options


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(port=args.port, duration=args.duration)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grantex-guard", description="Grantex grant-token tools.")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser(
        "inspect", help="explain what is right and wrong with a grant token",
        description="Decode a grant token without trusting it, run every check of the "
        "pipeline and print one line per check. Exit code: 0 valid, 1 invalid, 2 could not check.",
    )
    inspect.add_argument("token", help="the token, or - to read it from standard input")
    inspect.add_argument("--issuer", help="the issuer to trust (default: the token's own iss, flagged)")
    inspect.add_argument("--jwks-uri", help="where the keys are (default: derived from the issuer)")
    inspect.add_argument("--audience", help="this API's identifier")
    inspect.add_argument("--scope", action="append", help="a scope the route requires (repeatable)")
    inspect.add_argument("--max-delegation-depth", type=int, default=3)
    inspect.add_argument("--api-key", help="also ask Grantex whether the grant is revoked "
                         "(default: $GRANTEX_API_KEY; never printed)")
    inspect.add_argument("--api-base-url", help="the Grantex API (default: derived from the issuer)")
    inspect.add_argument("--at", type=float, help="check at this Unix time instead of now")
    inspect.add_argument("--allow-http", action="store_true", help="allow a plain-http JWKS URI")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=_inspect)

    demo = commands.add_parser(
        "demo", help="run an example API with a local issuer and print curl commands",
        description="Start an example Starlette API on 127.0.0.1 protected by grantex-guard, "
        "with an embedded local issuer, and print ready-to-paste curl commands.",
    )
    demo.add_argument("--port", type=int, default=8765)
    demo.add_argument("--duration", type=float, default=None,
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
