"""Card numbers in CSV cells: a grouped card followed by the next cell is still a card; bare
digits followed by a decimal part are a number, not a card."""

from __future__ import annotations

import pytest

from scanners.dlp.detectors import CardDetector


@pytest.mark.parametrize(("text", "found"), [
    ("Jane Roe,4556 7375 8689 9855,08/28\n", ["4556 **** **** 9855"]),
    ("Jane Roe;4556-7375-8689-9855;08/28\n", ["4556 **** **** 9855"]),
    ("\"4929 3821 6547 7011\",\"11/27\"\n", ["4929 **** **** 7011"]),
    ("total 4556737586899855,08 EUR\n", []),  # a decimal comma: a number, not a card
    ("ratio 4556 7375 8689 9855.5\n", []),
])
def test_cards_in_csv_cells(text: str, found: list[str]) -> None:
    assert [h.masked for h in CardDetector().find(text)] == found
