"""SECURITY.md cites the tests that prove each defence: every cited test must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_cited_by_security_md_exists() -> None:
    cited = set(re.findall(r"\b(test_[a-z0-9_]+)\b(?!\.py)", (ROOT / "SECURITY.md").read_text()))
    defined = set(re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", "\n".join(
        path.read_text() for path in (ROOT / "tests").glob("test_*.py")), re.MULTILINE))
    # "test_hostile_token_through_*" cites every test of that family.
    missing = [name for name in cited if not (name in defined or (name.endswith("_") and any(
        test.startswith(name) for test in defined)))]
    assert len(cited) > 40
    assert missing == []
