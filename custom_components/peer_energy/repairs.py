"""Fix flows of repair issues: a failed join is corrected and tried again from the repair.

The ``join_failed`` issue (raised by ``federation_setup`` when joining a community fails,
whatever the reason) offers "Fix" instead of only "Ignore": one form with the address the
other homes reach this home at (prefilled) and, optionally, a new invitation. Submitting
it writes them into the community subentry, which reloads the entry and starts the join
again; if that fails too, the issue comes back with the new reason.
"""

from __future__ import annotations

from typing import Final

from homeassistant import data_entry_flow
from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow
from homeassistant.core import HomeAssistant
from homeassistant.helpers.selector import TextSelector, TextSelectorConfig, TextSelectorType
import voluptuous as vol

from . import federation
from .community_flow import (
    ERROR_INVALID_ADDRESS,
    ERROR_INVALID_INVITATION,
    ERROR_INVITATION_EXPIRED,
    valid_address,
)
from .const import CONF_ADDRESS, CONF_COMMUNITY_ACTION, CONF_INVITATION, CommunityAction
from .core.federation.community import Invitation, InvitationError
from .federation import ISSUE_JOIN_FAILED
from .federation_setup import community_subentry

ABORT_NOT_JOINING: Final = "not_joining"


class JoinRetryFlow(RepairsFlow):
    """Correct the address (or paste a new invitation) and join again."""

    def __init__(self, entry_id: str) -> None:
        """For the entry whose join failed."""
        self.entry_id = entry_id

    async def async_step_init(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """The form; on submit, the subentry gets the new data and the join starts again."""
        entry = self.hass.config_entries.async_get_entry(self.entry_id)
        subentry = community_subentry(entry) if entry is not None else None
        if (
            entry is None
            or subentry is None
            or subentry.data.get(CONF_COMMUNITY_ACTION) != CommunityAction.JOIN
        ):
            return self.async_abort(reason=ABORT_NOT_JOINING)
        errors: dict[str, str] = {}
        if user_input is not None:
            address = str(user_input.get(CONF_ADDRESS, "")).strip().rstrip("/")
            text = "".join(str(user_input.get(CONF_INVITATION, "")).split())
            if not valid_address(address):
                errors[CONF_ADDRESS] = ERROR_INVALID_ADDRESS
            if text:
                try:
                    if Invitation.decode(text).expired(federation.now_ms()):
                        errors[CONF_INVITATION] = ERROR_INVITATION_EXPIRED
                except InvitationError:
                    errors[CONF_INVITATION] = ERROR_INVALID_INVITATION
            if not errors:
                data = {**subentry.data, CONF_ADDRESS: address}
                if text:
                    data[CONF_INVITATION] = text
                # Reloads the entry (its update listener), which joins again.
                self.hass.config_entries.async_update_subentry(entry, subentry, data=data)
                return self.async_create_entry(data={})
        schema = vol.Schema(
            {
                vol.Required(CONF_ADDRESS): TextSelector(
                    TextSelectorConfig(type=TextSelectorType.URL)
                ),
                vol.Optional(CONF_INVITATION): TextSelector(TextSelectorConfig(multiline=True)),
            }
        )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                schema, user_input or {CONF_ADDRESS: subentry.data.get(CONF_ADDRESS, "")}
            ),
            errors=errors,
        )


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """The fix flow of an issue of this integration."""
    if issue_id == ISSUE_JOIN_FAILED and data is not None and "entry_id" in data:
        return JoinRetryFlow(str(data["entry_id"]))
    return ConfirmRepairFlow()  # pragma: no cover - every fixable issue has data
