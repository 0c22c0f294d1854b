"""docs/engine.md's rulebook table is the code's rulebook, row for row."""

from __future__ import annotations

from pathlib import Path

from quantdesk.engine.rules import RULEBOOK, RULEBOOK_VERSION

DOC = Path(__file__).resolve().parents[2] / "docs" / "engine.md"


def test_rulebook_table_matches_the_code() -> None:
    text = DOC.read_text()
    assert f"## The rulebook (version `{RULEBOOK_VERSION}`)" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    expected = [
        f"| `{r.rule.value}` | {r.market.value} | {r.board} | {r.value:g} | "
        f"{r.valid_from.isoformat()} | {r.source} |"
        for r in RULEBOOK
    ]
    assert rows == expected
