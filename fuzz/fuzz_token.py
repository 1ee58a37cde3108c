"""Fuzz the token parser and the whole verification pipeline (not run by CI).

    PYTHONPATH=src python fuzz/fuzz_token.py                 # atheris when installed
    PYTHONPATH=src python fuzz/fuzz_token.py --seconds 120   # bounded run
    PYTHONPATH=src python fuzz/fuzz_token.py --fallback      # pure-Python mutation loop

The target feeds one input to `split_compact` + header/payload decoding, then to
`Guard.verify` (a real ES256 key, JWKS served in-process) and to `check_proof` as a DPoP
proof. The only acceptable outcomes are a Grant or a GuardError with status 401/403;
anything else (another exception, a 5xx status) is a finding and stops the run.

Seeds are real tokens (every shape) and proofs; the fallback mutates them with byte
flips, splices, base64url re-encoding of mutated JSON and part shuffles, and stops
after `--seconds`.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from grantex_guard import Guard, GuardError
from grantex_guard.dpop import check_proof
from grantex_guard.jose import split_compact
from grantex_guard.testing import DPoPAgent, LocalIssuer

API = "https://api.example.com"
URL = API + "/calendar"
NOW = 1_800_000_000.0


class Target:
    """Everything one input is run through, built once."""

    def __init__(self) -> None:
        clock: Callable[[], float] = lambda: NOW  # noqa: E731 - a frozen clock
        self.issuer = LocalIssuer("ES256", clock=clock)
        self.agent = DPoPAgent(clock=clock)
        self.guard: Guard = self.issuer.guard(audience=API, token_cache_size=0)
        self.guard.warm_up()
        self.bound = self.issuer.mint(["calendar:read"], audience=API, bound_to=self.agent.thumbprint)

    def seeds(self) -> list[bytes]:
        mint = self.issuer.mint
        tokens = [
            mint(["calendar:read"], audience=API),
            mint(["payments:initiate:max_500", "calendar:read"], audience=API, budget=(100, "USD")),
            mint(["calendar:read"], audience=API, token_format="dual"),
            mint(["calendar:read"], audience=API, token_format="v1"),
            mint(["calendar:read"], audience=API,
                 delegated_from=mint(["calendar:read"], audience=API)),
            self.bound,
            self.agent.proof("GET", URL, self.bound),
        ]
        return [token.encode() for token in tokens]

    def run(self, data: bytes) -> None:
        text = data.decode("latin-1")
        self._expect_guard_error(lambda: split_compact(text, 8192).header())
        self._expect_guard_error(lambda: split_compact(text, 8192).payload())
        self._expect_guard_error(lambda: self.guard.verify(text, scopes=["calendar:read"]))
        self._expect_guard_error(lambda: self.guard.verify(
            self.bound, scopes=["calendar:read"], dpop=text, method="GET", url=URL))
        self._expect_guard_error(lambda: check_proof(
            text, access_token=self.bound, thumbprint=self.agent.thumbprint, method="GET",
            url=URL, now=NOW))

    @staticmethod
    def _expect_guard_error(call: Callable[[], Any]) -> None:
        try:
            call()
        except GuardError as error:
            if error.status not in (401, 403):
                raise AssertionError(f"status {error.status} ({error.code}): {error.detail}") from None


# -- pure-Python fallback ------------------------------------------------------------------

B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
INTERESTING = [b".", b"=", b"+", b"/", b"\x00", b"\xff", b" ", b"..", b"eyJ", b"A" * 300,
               b"\xc3\xa9", b"%2e"]
JSON_VALUES: list[Any] = [None, True, 0, -1, 2**64, 1e308, "", "none", "RS256", "ES256",
                          [], {}, ["at+jwt"], "A" * 5000, {"sub": None}, "\u0430"]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _json_mutation(rng: random.Random, seed: bytes) -> bytes:
    """Decode one part, change one member, re-encode: reaches past the JSON parser."""
    parts = seed.split(b".")
    index = rng.randrange(min(2, len(parts)))
    try:
        obj = json.loads(base64.urlsafe_b64decode(parts[index] + b"=" * (-len(parts[index]) % 4)))
    except ValueError:
        return seed
    if isinstance(obj, dict) and obj:
        name = rng.choice([*obj, "crit", "jku", "kid", "typ", "cnf", "act"])
        if rng.random() < 0.2:
            obj.pop(name, None)
        else:
            obj[name] = rng.choice(JSON_VALUES)
    parts[index] = _b64(json.dumps(obj).encode())
    return b".".join(parts)


def mutate(rng: random.Random, seed: bytes, corpus: list[bytes]) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(8)
        position = rng.randrange(len(data) + 1)
        if choice == 0 and data:
            data[min(position, len(data) - 1)] = rng.choice(B64URL)
        elif choice == 1 and data:
            data[min(position, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 2:
            data[position:position] = rng.choice(INTERESTING)
        elif choice == 3:
            del data[position:position + rng.randint(1, 16)]
        elif choice == 4:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            data = bytearray(bytes(data[:position]) + other[cut:])
        elif choice == 5:
            data = bytearray(_json_mutation(rng, bytes(data)))
        elif choice == 6:
            parts = bytes(data).split(b".")
            rng.shuffle(parts)
            data = bytearray(b".".join(parts))
        else:
            data = data[:position]
    return bytes(data)


def fallback(target: Target, seconds: float, seed: int) -> int:
    rng = random.Random(seed)  # noqa: S311 - reproducible mutations, not secrets
    corpus = target.seeds()
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        data = mutate(rng, rng.choice(corpus), corpus)
        try:
            target.run(data)
        except Exception:
            print(f"finding after {runs} runs, input {data!r}", file=sys.stderr)
            raise
        runs += 1
        if runs % 500 == 0 and len(corpus) < 5000:
            corpus.append(data)  # keep some mutants as seeds: deeper mutations over time
    print(f"fallback fuzzer: {runs} inputs in {seconds:.0f} s ({runs / seconds:.0f}/s), "
          f"seed {seed}, no finding")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description="Fuzz the grant-token parser and pipeline.")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--fallback", action="store_true", help="use the pure-Python loop")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--corpus", help="atheris corpus directory (default: a new temp dir)")
    args, rest = parser.parse_known_args()
    target = Target()
    try:
        import atheris  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        atheris = None
    if args.fallback or atheris is None:
        if atheris is None:
            print("atheris is not installed: using the pure-Python mutation loop")
        fallback(target, args.seconds, args.seed)
        return
    import os
    import tempfile

    # Outside the tree unless asked: the corpus grows to thousands of files.
    corpus_dir = args.corpus or tempfile.mkdtemp(prefix="grantex-guard-fuzz-")
    os.makedirs(corpus_dir, exist_ok=True)
    print(f"corpus: {corpus_dir}")
    for index, seed in enumerate(target.seeds()):
        with open(os.path.join(corpus_dir, f"seed-{index}"), "wb") as handle:
            handle.write(seed)
    atheris.instrument_all()  # coverage feedback from every module loaded so far
    atheris.Setup([sys.argv[0], *rest, f"-max_total_time={int(args.seconds)}",
                   "-max_len=9000", corpus_dir], target.run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
