"""Refusals of an action's input, answered as validation errors on every path.

Home Assistant's websocket API (the UI's path) answers a ``ServiceValidationError`` with its
translated message. Its REST API (``POST /api/services/...``, 2025.4) does not map it: the
error leaves the view, aiohttp logs it at error level with a traceback ("Error handling
request") and answers a bare 500. A refusal of the caller's input then reads like a bug of
ours in the log, and the caller never learns the reason.

``ActionRefusedError`` is a ``ServiceValidationError`` (the websocket API, scripts and automations
see exactly that, translation key and placeholders included) that is also aiohttp's
``HTTPBadRequest``, which aiohttp answers itself, without logging: a REST caller gets 400
with the message as ``{"message": ...}``, the shape of Home Assistant's own REST errors.
"""

from __future__ import annotations

import json

from aiohttp import web
from homeassistant.exceptions import ServiceValidationError

from .const import DOMAIN


class ActionRefusedError(ServiceValidationError, web.HTTPBadRequest):
    """An action's input refused with a translation key; nothing was changed."""

    def __init__(self, key: str, placeholders: dict[str, str] | None = None) -> None:
        """Refuse with ``key`` (``exceptions`` in ``strings.json``) and its placeholders."""
        # Home Assistant's attributes first: the message below is generated from them.
        # (ServiceValidationError's own __init__ would hand its positional message to
        # aiohttp's keyword-only __init__ through the shared MRO.)
        self.translation_domain = DOMAIN
        self.translation_key = key
        self.translation_placeholders = placeholders
        self.generate_message = True
        web.HTTPBadRequest.__init__(
            self,
            text=json.dumps({"message": str(self)}),
            content_type="application/json",
        )
        self.args = (key,)  # as ServiceValidationError sets it (aiohttp set the reason)
