"""FederationLink edge cases over an injected in-memory transport (no sockets)."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from homeassistant.components import persistent_notification
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
import pytest

from custom_components.peer_energy.const import (
    CONF_ADDRESS,
    CONF_COMMUNITY_ACTION,
    CONF_INVITATION,
    DOMAIN,
)
from custom_components.peer_energy.core.federation.community import CommunityError, Invitation
from custom_components.peer_energy.core.market.orders import Order, Side
from custom_components.peer_energy.core.trust.identity import Identity, enrol_asset
from custom_components.peer_energy.federation import (
    EVENT_DEVICE_ENROLLED,
    EVENT_EQUIVOCATION,
    ISSUE_JOIN_FAILED,
    FederationError,
    FederationLink,
    SlotOutcome,
    community_rules,
    federation_store,
    now_ms,
    peer_restore,
)
from custom_components.peer_energy.http import status_of

from .conftest import (
    COMMUNITY_SUBENTRY_ID,
    Clock,
    Home,
    fast_rules,
    next_slot,
    open_ledger,
    run_slot as run_http_slot,
)


class MemTransport:
    """Delivers at once to links registered by address; returns the view's status."""

    def __init__(self) -> None:
        self.links: dict[str, FederationLink] = {}
        self.down: set[str] = set()

    async def async_send(self, address: str, data: bytes) -> int:
        link = self.links.get(address)
        if link is None or address in self.down:
            return 0
        return status_of(link.receive(data, "mem"))[0]

    async def async_info(self, address: str) -> dict[str, Any] | None:
        link = self.links.get(address)
        return None if link is None or address in self.down else link.info()


async def make_link(
    hass: HomeAssistant, net: MemTransport, clock: Clock, name: str, *, announce: bool = False
) -> Home:
    link = FederationLink(
        hass,
        f"mem_{name}",
        Identity.generate(),
        net,
        store=federation_store(hass, f"mem_{name}"),
        clock=clock,
        schedule=False,
        announce=announce,
    )
    net.links[name] = link
    home = Home(name, link, name)
    link.async_add_result_listener(home.outcomes.append)
    return home


async def mem_join(hass: HomeAssistant, founder: Home, home: Home) -> None:
    inv = await founder.link.async_create_invitation(3_600_000)
    assert await home.link.async_join(inv.encode(), home.address) == 202
    assert await home.link.async_wait_joined(1) is None


@pytest.fixture
def net() -> MemTransport:
    return MemTransport()


async def test_void_slot_equivocation_and_enrolment(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """An equivocating member is proven and reported; a slot without quorum is void;
    an enrolled device is announced."""
    a = await make_link(hass, net, clock, "a", announce=True)
    await a.link.async_found("Lime Walk", fast_rules(), "a")
    b = await make_link(hass, net, clock, "b")
    c = await make_link(hass, net, clock, "c")
    await mem_join(hass, a, b)
    await mem_join(hass, a, c)
    await open_ledger(hass, a)
    events: list[Event] = []
    hass.bus.async_listen(EVENT_EQUIVOCATION, events.append)
    hass.bus.async_listen(EVENT_DEVICE_ENROLLED, events.append)

    rules = fast_rules()
    slot = next_slot(clock, rules)
    await b.link.async_submit_orders(slot * 1000, [Order.single("x", "", Side.SELL, slot, 100, 10)])
    assert b.link.peer is not None
    other = Order.single("x", b.link.member_key, Side.SELL, slot, 100, 11).to_dict()
    second = b.link.peer._seal("bid", {"slot": slot, "orders": [other]}, clock.now)
    a.link.receive(second, "b")
    await a.link.async_drain()
    await hass.async_block_till_done()
    assert [e.event_type for e in events] == [EVENT_EQUIVOCATION]
    assert events[0].data["member"] == b.link.member_key

    # b and c go silent: a alone is no quorum of three, the slot is void.
    net.down.update({"b", "c"})
    await run_http_slot(clock, [a], slot, rules)
    assert a.outcomes == [SlotOutcome(slot * 1000, None, "no_quorum", ())]

    net.down.clear()
    asset = Identity.generate()
    enrolment = enrol_asset(
        c.link.member_key, c.link.identity, asset, "heat-pump-1", "consumer", clock.now
    )
    assert c.link.peer is not None
    c.link._handle(c.link.peer.enrol(enrolment, clock.now))
    await c.link.async_drain()
    await hass.async_block_till_done()
    assert events[-1].event_type == EVENT_DEVICE_ENROLLED
    assert events[-1].data == {
        "member": c.link.member_key,
        "asset_id": "heat-pump-1",
        "kind": "consumer",
    }
    notes = persistent_notification._async_get_or_create_notifications(hass)
    assert any("enrolled a device" in n["message"] for n in notes.values())
    assert a.ledger is not None
    await a.link.async_drain()
    summary = await a.ledger.async_diagnostics()
    assert summary["ledger"]["evidence"] == 1
    for home in (a, b, c):
        await home.link.async_stop()
    await a.ledger.async_close()


async def test_link_guards(hass: HomeAssistant, clock: Clock, net: MemTransport) -> None:
    """Errors are FederationError with a message; listeners cannot break the link."""
    a = await make_link(hass, net, clock, "a")
    with pytest.raises(FederationError):
        await a.link.async_submit_orders(0, [])
    assert await a.link.async_wait_joined(0.01) == "not_joining"
    assert await a.link.async_probe_self()  # nothing to probe before a community
    await a.link.async_found("Ash Close", fast_rules(), "a")
    with pytest.raises(FederationError, match="gate closure"):
        await a.link.async_submit_orders(
            1_020_000, [Order.single("x", "", Side.SELL, 1_020, 100, 10)]
        )
    with pytest.raises(FederationError, match="not a current member"):
        await a.link.async_remove("ab" * 32)
    await a.link.async_set_address("a2")
    assert a.link.address == "a2"
    net.links["a2"] = a.link

    def broken(_: SlotOutcome) -> None:
        raise RuntimeError("listener bug")

    remove = a.link.async_add_result_listener(broken)
    a.link._notify_listeners(SlotOutcome(0, None, "x", ()))
    remove()
    remove()  # twice is harmless
    b = await make_link(hass, net, clock, "b")
    await mem_join(hass, a, b)
    with pytest.raises(FederationError, match="admin"):
        await b.link.async_remove(a.link.member_key)
    with pytest.raises(FederationError):
        await b.link.async_join("peerenergy1:broken", "b")

    a.link._on_timer(None)  # type: ignore[arg-type]
    await a.link.async_stop()
    a.link.spawn(a.link.async_save(), "late")  # after stop: dropped, no task
    assert not a.link._tasks
    assert a.link.receive(b"{}", "x") == []
    assert now_ms() > 1_700_000_000_000
    with pytest.raises(FederationError, match="damaged"):
        peer_restore(a.link.identity, {"version": 7}, clock.now)
    with pytest.raises(CommunityError):
        community_rules(
            slot_minutes=0,
            gate_closure_lead_s=20,
            fee=0,
            credit_limit_base=0,
            fair_share_pct=100,
            max_members=5,
            import_price=30,
            feed_in_tariff=8,
        )


async def test_join_pending_across_restart(
    hass: HomeAssistant, clock: Clock, net: MemTransport
) -> None:
    """A join without welcome is stored; a restarted link resumes it; stop ends the wait."""
    a = await make_link(hass, net, clock, "a")
    await a.link.async_found("Yew Court", fast_rules(), "a")
    inv = await a.link.async_create_invitation(3_600_000)
    b = await make_link(hass, net, clock, "b")
    net.down.add("a")
    assert await b.link.async_join(inv.encode(), "b") == 0
    assert await b.link.async_wait_joined(0.01) == "http_0"
    again = FederationLink(
        hass,
        "mem_b",
        b.link.identity,
        net,
        store=federation_store(hass, "mem_b"),
        clock=clock,
        schedule=False,
        announce=False,
    )
    assert await again.async_load() == "joining"
    net.links["b"] = again
    net.down.clear()
    assert await again.async_resume_join() == 202
    assert await again.async_wait_joined(1) is None
    assert again.members == 2

    c = await make_link(hass, net, clock, "c")
    inv_c = await a.link.async_create_invitation(3_600_000)
    net.links["c"] = c.link
    c_link = c.link
    with patch.object(net, "async_send", return_value=202):
        assert await c_link.async_join(inv_c.encode(), "c") == 202
    assert await c_link.async_wait_joined(0.01) == "timeout"
    await c_link.async_stop()
    assert await c_link.async_wait_joined(0.01) == "stopped"


async def test_ledger_write_failures_are_logged(
    hass: HomeAssistant, clock: Clock, net: MemTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing ledger write is an error in the log; the federation carries on."""
    a = await make_link(hass, net, clock, "a")
    await a.link.async_found("Elder Way", fast_rules(), "a")
    b = await make_link(hass, net, clock, "b")
    await mem_join(hass, a, b)
    await open_ledger(hass, a)
    await open_ledger(hass, b)
    rules = fast_rules()
    slot = next_slot(clock, rules)
    await a.link.async_submit_orders(slot * 1000, [Order.single("s", "", Side.SELL, slot, 500, 10)])
    await b.link.async_submit_orders(slot * 1000, [Order.single("b", "", Side.BUY, slot, 500, 20)])
    assert a.ledger is not None
    with patch.object(a.ledger, "async_commit_slot", side_effect=HomeAssistantError("disk full")):
        await run_http_slot(clock, [a, b], slot, rules)
        await a.link.async_drain()
    assert "Could not record slot" in caplog.text
    assert "Could not record the trades" in caplog.text
    assert b.link.recorder.trades_recorded == 1
    for home in (a, b):
        await home.link.async_stop()
        assert home.ledger is not None
        await home.ledger.async_close()


async def test_setup_paths(
    hass: HomeAssistant,
    clock: Clock,
    http_address: str,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A damaged store, rules that do not validate and a join that fails each leave the
    entry loaded without a community and say why."""
    from .conftest import community_entry

    entry = community_entry(http_address)
    hass_storage[f"{DOMAIN}.federation.{entry.entry_id}"] = {
        "version": 1,
        "key": f"{DOMAIN}.federation.{entry.entry_id}",
        "data": {"peer": {"version": 99}},
    }
    sub = dict(entry.subentries[COMMUNITY_SUBENTRY_ID].data)
    sub["rules"] = {"gate_closure_lead_s": 0}
    entry = type(entry)(
        domain=DOMAIN,
        entry_id=entry.entry_id,
        title=entry.title,
        unique_id=DOMAIN,
        data=dict(entry.data),
        options=dict(entry.options),
        subentries_data=[
            {
                "data": sub,
                "subentry_id": COMMUNITY_SUBENTRY_ID,
                "subentry_type": "community",
                "title": "Broken",
                "unique_id": "community",
            }
        ],
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert "stored community" in caplog.text
    assert "Cannot found the community" in caplog.text
    assert entry.runtime_data.federation is None
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def test_failed_join_raises_repair(
    hass: HomeAssistant, clock: Clock, http_address: str
) -> None:
    """The inviting home does not answer: after set-up a repair issue says so."""
    from .conftest import community_entry

    founder = Identity.generate()
    silent = Invitation(
        "c" * 32, founder.public_key, "http://127.0.0.1:9", b"\4" * 32, clock.now + 10**7
    )
    entry = community_entry(
        http_address,
        community={
            CONF_COMMUNITY_ACTION: "join",
            CONF_INVITATION: silent.encode(),
            CONF_ADDRESS: http_address,
        },
        title="Community cccccccc",
    )
    entry.add_to_hass(hass)
    with patch(
        "custom_components.peer_energy.http.HttpTransport.__init__.__defaults__", (5.0, 1, 0.01)
    ):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done(wait_background_tasks=True)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_JOIN_FAILED)
    assert issue is not None
    # The reason is a translation of its own (no English text in a placeholder).
    assert issue.translation_key == "join_failed_no_answer"
    assert issue.translation_placeholders == {"status": "0", "address": http_address}
    assert issue.is_fixable
    assert entry.runtime_data.federation is None
