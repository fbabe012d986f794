"""The shipped English translation is strings.json, kept in sync."""

from __future__ import annotations

import json
from pathlib import Path

PKG = Path(__file__).parent.parent / "custom_components" / "peer_energy"


def test_english_translation_matches_strings() -> None:
    strings = json.loads((PKG / "strings.json").read_text(encoding="utf-8"))
    english = json.loads((PKG / "translations" / "en.json").read_text(encoding="utf-8"))
    assert english == strings, "run: cp strings.json translations/en.json"
