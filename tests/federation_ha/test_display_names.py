"""Display names: the name a home chose in its options reaches its neighbours."""

from __future__ import annotations

from homeassistant.core import HomeAssistant

from custom_components.peer_energy.const import CONF_DISPLAY_NAME
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry
from custom_components.peer_energy.websocket_api import async_market_view

from .conftest import Clock, Home, HomeFactory, join, settle


async def test_display_names_reach_the_neighbours(
    hass: HomeAssistant,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """A's name from its options is announced when its link starts; a newcomer gets it
    with the welcome; B's own name reaches A's market view; an unchanged name is not sent
    again."""
    entry, a = home_a
    assert a.link.member_names == {}
    # The options change (a reload would start a new link with them; here the running
    # link is started again to read them).
    listeners = list(entry.update_listeners)
    entry.update_listeners.clear()
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, CONF_DISPLAY_NAME: "Maple Street"}
    )
    entry.update_listeners.extend(listeners)
    a.link.async_start()
    assert a.link.member_names == {a.link.member_key: "Maple Street"}
    b = await make_home("B")
    await join(hass, a, b, [])
    assert b.link.member_names[a.link.member_key] == "Maple Street"
    # B names itself: A hears it.
    assert b.link.peer is not None
    b.link._handle(b.link.peer.set_name("Birch Road", clock.now))
    await settle(a, b)
    await hass.async_block_till_done()
    assert a.link.member_names == {
        a.link.member_key: "Maple Street",
        b.link.member_key: "Birch Road",
    }
    # The market view names a neighbour by its chosen name (here an unreachable one).
    a.link._unreachable.add(b.link.member_key)
    view = await async_market_view(hass, entry)
    assert view["community"]["unreachable"] == [
        {"member": b.link.member_key[:8], "name": "Birch Road"}
    ]
    a.link._unreachable.clear()
    # Starting again with the same name signs nothing new.
    assert a.link.peer is not None
    records = len(a.link.peer.membership.records)
    a.link.async_start()
    assert len(a.link.peer.membership.records) == records
