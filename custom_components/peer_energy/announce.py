"""Announcements of the federation link: bus events, persistent notifications, repairs.

One owner for everything the link tells Home Assistant and its users:

* bus events (``fire``), documented in ``docs/community.md``;
* persistent notifications (``notify``): they have no translation key in Home Assistant,
  so the text is built from this integration's translations (``exceptions`` category,
  keys ending in ``_notification``) in Home Assistant's language, loaded once with
  ``async_get_translations`` (English when a language lacks the key);
* repair issues (``issue``/``clear``), with ``translation_key`` and placeholders.

``enabled=False`` keeps all of it off Home Assistant (several homes in one test process).
"""

from __future__ import annotations

from typing import Any, Final

from homeassistant.components import persistent_notification
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.translation import (
    async_get_cached_translations,
    async_get_translations,
)

from .const import DOMAIN

CATEGORY: Final = "exceptions"
TITLE_KEY: Final = "notification_title"


def _lookup(translations: dict[str, str], key: str) -> str | None:
    return translations.get(f"component.{DOMAIN}.{CATEGORY}.{key}.message")


def render(hass: HomeAssistant, key: str, placeholders: dict[str, str] | None = None) -> str:
    """The translated text of ``key`` (cached translations; the key itself if missing)."""
    language = hass.config.language or "en"
    text = _lookup(async_get_cached_translations(hass, language, CATEGORY, DOMAIN), key)
    if text is None and language != "en":
        text = _lookup(async_get_cached_translations(hass, "en", CATEGORY, DOMAIN), key)
    if text is None:
        return key
    try:
        return text.format(**(placeholders or {}))
    except (KeyError, IndexError, ValueError):  # a translation with a broken placeholder
        return text


async def async_load_texts(hass: HomeAssistant) -> None:
    """Load this integration's texts in Home Assistant's language (and English)."""
    language = hass.config.language or "en"
    for lang in {language, "en"}:
        await async_get_translations(hass, lang, CATEGORY, {DOMAIN})


class Announcer:
    """What one home's link tells Home Assistant (see the module docstring)."""

    def __init__(self, hass: HomeAssistant, *, enabled: bool = True) -> None:
        """Announce on ``hass`` (nothing at all when ``enabled`` is False)."""
        self.hass = hass
        self.enabled = enabled

    @callback
    def fire(self, event_type: str, data: dict[str, Any]) -> None:
        """Fire a bus event."""
        if self.enabled:
            self.hass.bus.async_fire(event_type, data)

    @callback
    def notify(
        self, key: str, placeholders: dict[str, str] | None = None, *, notification_id: str
    ) -> None:
        """A persistent notification with the translated text ``key`` (texts loaded first
        if needed, in a task: never blocks the caller)."""
        if self.enabled:
            self.hass.async_create_task(
                self._async_notify(key, placeholders, notification_id),
                f"{DOMAIN} notification",
                eager_start=True,
            )

    async def _async_notify(
        self, key: str, placeholders: dict[str, str] | None, notification_id: str
    ) -> None:
        if render(self.hass, key, placeholders) == key:
            await async_load_texts(self.hass)
        persistent_notification.async_create(
            self.hass,
            render(self.hass, key, placeholders),
            title=render(self.hass, TITLE_KEY),
            notification_id=notification_id,
        )

    @callback
    def issue(
        self,
        issue_id: str,
        translation_key: str,
        placeholders: dict[str, str] | None = None,
        *,
        severity: ir.IssueSeverity = ir.IssueSeverity.WARNING,
    ) -> None:
        """Raise (or update) a repair issue."""
        if self.enabled:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id,
                is_fixable=False,
                severity=severity,
                translation_key=translation_key,
                translation_placeholders=placeholders,
            )

    @callback
    def clear(self, issue_id: str) -> None:
        """Delete a repair issue (nothing if it is not there)."""
        if self.enabled:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)


def short(member: str) -> str:
    """A member id as people see it (first 8 hex characters)."""
    return member[:8]
