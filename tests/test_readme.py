"""Every Python code block in README.md runs, so the documentation cannot rot.

Blocks run in order in one namespace (later blocks use names from earlier ones,
as a reader would); a block's `test_*` functions are then called with the
pytest plugin's fixtures.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from grantex_guard import Guard
from grantex_guard.pytest_plugin import HeaderFactory
from grantex_guard.testing import LocalIssuer

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
NAMESPACE: dict[str, Any] = {"__name__": "readme_example"}


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(index: int, grantex_issuer: LocalIssuer, grantex_guard: Guard,
                           grantex_headers: HeaderFactory) -> None:
    before = set(NAMESPACE)
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec", dont_inherit=True), NAMESPACE)
    fixtures = {"grantex_issuer": grantex_issuer, "grantex_guard": grantex_guard,
                "grantex_headers": grantex_headers}
    for name in set(NAMESPACE) - before:
        if name.startswith("test_") and callable(NAMESPACE[name]):
            wanted = inspect.signature(NAMESPACE[name]).parameters
            NAMESPACE[name](**{param: fixtures[param] for param in wanted})
