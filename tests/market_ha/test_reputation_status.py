"""The reputation status sensor: this home's reputation in words, never unavailable
in a community (``not_rated`` until there is evidence about this home)."""

from __future__ import annotations

from types import SimpleNamespace

from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_component import async_update_entity
import pytest

from custom_components.peer_energy.core.trust.reputation import NEUTRAL
from custom_components.peer_energy.market import SlotClock
from custom_components.peer_energy.sensor import REPUTATION_STATUSES, reputation_status

ENTITY = "sensor.maple_street_7_reputation_status"


@pytest.mark.parametrize(
    ("permille", "status"),
    [
        (None, "not_rated"),
        (0, "below_neutral"),
        (NEUTRAL - 1, "below_neutral"),
        (NEUTRAL, "neutral"),
        (NEUTRAL + 1, "above_neutral"),
        (1000, "above_neutral"),
    ],
)
def test_reputation_status(permille: int | None, status: str) -> None:
    """Below, at and above the neutral score every newcomer starts with."""
    assert reputation_status(permille) == status
    assert status in REPUTATION_STATUSES


def _state(hass: HomeAssistant) -> str:
    state = hass.states.get(ENTITY)
    assert state is not None
    return state.state


async def test_reputation_status_sensor(hass: HomeAssistant, market: SlotClock) -> None:
    """Unavailable outside a community; in one it follows the home's own score."""
    assert _state(hass) == STATE_UNAVAILABLE
    link = SimpleNamespace(own_reputation=None)
    market.runtime.federation = link  # type: ignore[assignment]
    for permille, expected in ((None, "not_rated"), (420, "below_neutral"), (500, "neutral")):
        link.own_reputation = permille
        await async_update_entity(hass, ENTITY)
        assert _state(hass) == expected
    link.own_reputation = 875
    await async_update_entity(hass, ENTITY)
    state = hass.states.get(ENTITY)
    assert state is not None
    assert state.state == "above_neutral"
    assert state.attributes["options"] == list(REPUTATION_STATUSES)
    # A malformed score (not an integer) counts as no evidence, never as a crash.
    link.own_reputation = "high"
    await async_update_entity(hass, ENTITY)
    assert _state(hass) == "not_rated"


async def test_each_neighbours_status_in_the_reputation_sensor(
    hass: HomeAssistant, market: SlotClock
) -> None:
    """The Reputation sensor says each neighbour's score in words, a neighbour without
    evidence "not_rated"; a member that left is no neighbour."""
    me, rated, new, gone = "aa" * 32, "bb" * 32, "cc" * 32, "dd" * 32
    market.runtime.federation = SimpleNamespace(  # type: ignore[assignment]
        own_reputation=NEUTRAL,
        member_key=me,
        neighbours=(rated, new),
        reputations={me: NEUTRAL, rated: 900, gone: 100},
    )
    entity = "sensor.maple_street_7_reputation"
    await async_update_entity(hass, entity)
    state = hass.states.get(entity)
    assert state is not None
    assert state.attributes["peers_status"] == {
        "bb" * 4: "above_neutral",
        "cc" * 4: "not_rated",
    }
