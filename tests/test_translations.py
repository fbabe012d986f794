"""Translations: English is strings.json; German, Dutch and French are complete.

Two sets are checked: the integration's translations (``translations/<lang>.json``, what
Home Assistant shows in flows, entities, repairs and actions) and the market view's own
texts (``frontend/translations/<lang>.json``). In every language each set has exactly the
keys of English, no empty text, the same placeholders and the same markup as English, and
is not English left untranslated.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
from pathlib import Path
import re
from typing import Any

import pytest

PKG = Path(__file__).parent.parent / "custom_components" / "peer_energy"
LANGUAGES = ("de", "nl", "fr")
PANEL = PKG / "frontend" / "peer-energy-panel.js"
PLACEHOLDER = re.compile(r"\{\w+\}")
# Texts that read the same in a language and in English (names, units, formats).
SAME_SHARE_MAX = 0.1
# Plural forms of a counted text (CLDR categories; "other" is required).
PLURAL_FORMS = frozenset({"zero", "one", "two", "few", "many", "other"})


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _flat(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flat(value, f"{path}.{key}" if path else key)
    else:
        assert isinstance(node, str), f"{path} is not a text"
        yield path, node


def _markup(text: str) -> tuple[list[str], int, int]:
    return sorted(PLACEHOLDER.findall(text)), text.count("**"), text.count("`")


def test_english_translation_matches_strings() -> None:
    strings = _load(PKG / "strings.json")
    english = _load(PKG / "translations" / "en.json")
    assert english == strings, "run: cp strings.json translations/en.json"


def _check_language(english: dict[str, str], other: dict[str, str], where: str) -> None:
    missing = sorted(set(english) - set(other))
    extra = sorted(set(other) - set(english))
    assert not missing, f"{where}: missing keys {missing}"
    assert not extra, f"{where}: keys English does not have {extra}"
    for key, text in english.items():
        assert other[key].strip(), f"{where}: {key} is empty"
        assert _markup(other[key]) == _markup(text), f"{where}: {key} differs in placeholders"
    same = [key for key, text in english.items() if other[key] == text]
    assert len(same) <= SAME_SHARE_MAX * len(english), f"{where}: left in English: {same}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_integration_translation_is_complete(language: str) -> None:
    english = dict(_flat(_load(PKG / "strings.json")))
    other = dict(_flat(_load(PKG / "translations" / f"{language}.json")))
    _check_language(english, other, f"translations/{language}.json")


@pytest.mark.parametrize("language", LANGUAGES)
def test_market_view_translation_is_complete(language: str) -> None:
    folder = PKG / "frontend" / "translations"
    english = _load(folder / "en.json")
    other = _load(folder / f"{language}.json")
    _check_language(english, other, f"frontend/translations/{language}.json")


def test_market_view_texts_exist_and_are_used() -> None:
    """Every text key the panel names is in English, and every family of keys in English
    is one the panel uses (no dead texts)."""
    source = PANEL.read_text(encoding="utf-8")
    english = _load(PKG / "frontend" / "translations" / "en.json")
    named = set(re.findall(r"_t\(\s*\"([a-z_.]+)\"", source))
    assert named, "no text keys found in the panel"
    assert not sorted(named - set(english)), "the panel names texts English lacks"
    # Keys chosen by a condition ("order.sell" or "order.buy"), and keys built at run
    # time (`status.${...}`, `param.${key}`, ...: their family prefix).
    literals = set(re.findall(r"\"([a-z_]+(?:\.[a-z_]+)*)\"", source))
    dynamic = set(re.findall(r"`([a-z_]+)\.\$\{", source))
    # Texts that depend on a count: ``_tn("key", n, ...)`` picks ``key.one``, ``key.other``...
    counted = set(re.findall(r"_tn\(\s*\"([a-z_.]+)\"", source))
    assert counted, "no counted texts found in the panel"
    for key in counted:
        assert f"{key}.other" in english, f"{key} has no plural form 'other' in English"
        assert key not in english, f"{key} is a counted text: give it plural forms"
    for key in english:
        family = key.split(".")[0]
        base, _, form = key.rpartition(".")
        used = key in literals or family in dynamic
        assert used or (base in counted and form in PLURAL_FORMS), f"{key} is not used"


def test_market_view_covers_every_language_of_the_integration() -> None:
    """The panel asks for exactly the languages the integration is translated into."""
    source = PANEL.read_text(encoding="utf-8")
    match = re.search(r"const LANGUAGES = \[([^\]]*)\]", source)
    assert match is not None
    panel = sorted(re.findall(r"\"(\w+)\"", match.group(1)))
    shipped = sorted(p.stem for p in (PKG / "translations").glob("*.json"))
    assert panel == shipped == sorted(["en", *LANGUAGES])
    assert sorted(p.stem for p in (PKG / "frontend" / "translations").glob("*.json")) == panel
