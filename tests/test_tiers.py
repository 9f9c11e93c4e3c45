"""The test tiers (unit, smoke, learns; see conftest.py and docs/getting-started.md): registered, and every
test in exactly one."""

from __future__ import annotations

import pytest

TIERS = ("unit", "smoke", "learns")


def test_tiers_are_registered_markers(pytestconfig: pytest.Config) -> None:
    registered = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}
    assert set(TIERS) <= registered


def test_no_test_has_two_tiers(tier_problems: list[str]) -> None:
    """Checked over every collected test, including those ``-m`` or ``-k`` deselected."""
    assert tier_problems == [], "\n".join(tier_problems)


def test_every_selected_test_has_exactly_one_tier(request: pytest.FixtureRequest) -> None:
    """Including the default: a test with no tier marker is unit."""
    wrong = {}
    for item in request.session.items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            wrong[item.nodeid] = tiers
    assert wrong == {}
