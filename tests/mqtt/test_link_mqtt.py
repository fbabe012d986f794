"""The federation link on the MQTT carrier, against a real Mosquitto: homes found, invite
and join over the broker (the welcome acknowledged before the member counts), trade a slot,
and a broker restart raises a repair naming the broker, which clears when it is back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.core.federation.community import Invitation
from custom_components.peer_energy.federation import (
    BROKER_GRACE_S,
    ISSUE_BROKER,
    FederationLink,
    SlotOutcome,
)
from custom_components.peer_energy.mqtt_transport import BrokerConfig, BrokerStatus, MqttCarrier
from custom_components.peer_energy.transport import Parcel
from tests.federation.helpers import START_MS, make_identity, orders_for, rules

from .conftest import Broker


class Clock:
    """The links' shared fake clock (Unix ms)."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


async def _until(cond: Callable[[], bool], wait_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + wait_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def _link(
    hass: HomeAssistant, name: str, broker: Broker, clock: Clock, *, announce: bool = False
) -> tuple[FederationLink, list[SlotOutcome]]:
    carrier = MqttCarrier(hass.loop, BrokerConfig.from_url(broker.url, prefix="street"))
    link = FederationLink(
        hass,
        f"entry_{name}",
        make_identity(name),
        carrier,
        clock=clock,
        schedule=False,
        announce=announce,
    )
    outcomes: list[SlotOutcome] = []
    link.async_add_result_listener(outcomes.append)
    return link, outcomes


async def _connected(link: FederationLink) -> None:
    await _until(
        lambda: link.broker_state is not None and link.broker_state.status is BrokerStatus.CONNECTED
    )


async def _community(
    hass: HomeAssistant, broker: Broker, clock: Clock, n: int
) -> list[tuple[FederationLink, list[SlotOutcome]]]:
    founder = _link(hass, "m0", broker, clock, announce=True)
    link = founder[0]
    await link.async_found("Mqtt street", rules(), "http://ignored")
    assert link.address is not None
    assert link.address.startswith("mqtt:")
    link.async_start()
    await _connected(link)
    homes = [founder]
    for i in range(1, n):
        inv = await link.async_create_invitation(3_600_000)
        text = inv.encode()
        decoded = Invitation.decode(text)
        assert (decoded.transport, decoded.broker, decoded.prefix) == ("mqtt", broker.url, "street")
        home = _link(hass, f"m{i}", broker, clock)
        home[0].async_start()
        assert await home[0].async_join(text, "") == 202
        assert await home[0].async_wait_joined(15) is None
        await _until(lambda i=i: link.members == i + 1)
        homes.append(home)
    await _until(lambda: all(h.members == n for h, _ in homes))
    return homes


async def _submit(homes: list[tuple[FederationLink, list[SlotOutcome]]], clock: Clock) -> int:
    r = homes[0][0].rules
    assert r is not None
    slot = (clock.now // 1000 + r.gate_closure_lead_s + 1) // r.slot_seconds * r.slot_seconds
    while r.gate_closure_ms(slot) <= clock.now + 1000:
        slot += r.slot_seconds
    for i, (link, _) in enumerate(homes):
        assert link.peer is not None
        await link.async_submit_orders(slot * 1000, orders_for(link.peer, i, slot))
    await asyncio.sleep(0.3)
    return slot


async def _run(
    homes: list[tuple[FederationLink, list[SlotOutcome]]], clock: Clock, slot: int
) -> None:
    r = homes[0][0].rules
    assert r is not None
    clock.now = r.gate_closure_ms(slot) - 100
    end = r.gate_closure_ms(slot) + r.sync_window_ms + r.attest_window_ms + 500
    while clock.now < end:
        clock.now = min(end, clock.now + 100)
        for link, _ in homes:
            assert link.peer is not None
            if link.peer.next_wakeup_ms() <= clock.now:
                link.async_tick()
        await asyncio.sleep(0.02)


async def _run_slot(homes: list[tuple[FederationLink, list[SlotOutcome]]], clock: Clock) -> int:
    slot = await _submit(homes, clock)
    await _run(homes, clock, slot)
    return slot


def _final(outcomes: list[SlotOutcome], slot: int) -> Any:
    return [o for o in outcomes if o.slot_start_ms == slot * 1000 and o.result is not None]


async def test_links_join_trade_and_survive_a_broker_restart(
    hass: HomeAssistant, mosquitto: Broker
) -> None:
    clock = Clock()
    homes = await _community(hass, mosquitto, clock, 3)
    try:
        founder = homes[0][0]
        assert founder.transport_kind == "mqtt"
        assert founder.diagnostics()["transport"] == "mqtt"
        assert founder.snapshot()["carrier"]["keys"]["keys"]  # the community key is kept
        slot = await _run_slot(homes, clock)
        results = [_final(out, slot) for _, out in homes]
        assert all(len(r) == 1 for r in results)
        assert all(r[0].result == results[0][0].result for r in results)
        assert results[0][0].result.fills  # something traded

        # The broker goes away for longer than the grace: a repair names it, and the bids
        # made meanwhile do not leave. It comes back before gate closure: the repair goes,
        # the same signed bids go out again and the slot trades; nothing is committed twice.
        for link, _ in homes:
            link.broker_grace_s = 0.3
        mosquitto.stop()
        registry = ir.async_get(hass)
        await _until(lambda: registry.async_get_issue(DOMAIN, ISSUE_BROKER) is not None)
        issue = registry.async_get_issue(DOMAIN, ISSUE_BROKER)
        assert issue is not None
        assert issue.translation_key in {"broker_disconnected", "broker_unreachable"}
        assert issue.translation_placeholders is not None
        assert issue.translation_placeholders["broker"] == mosquitto.url
        clock.now += 60_000
        again = await _submit(homes, clock)
        mosquitto.start()
        await _until(lambda: registry.async_get_issue(DOMAIN, ISSUE_BROKER) is None, 30)
        for link, _ in homes:
            await _connected(link)
        await asyncio.sleep(0.5)  # every home resent its bid on reconnecting
        await _run(homes, clock, again)
        finals = [_final(out, again) for _, out in homes]
        assert all(len(f) == 1 for f in finals)
        assert all(f[0].result == finals[0][0].result for f in finals)
        for link, _ in homes:  # every home's bid made it into the final book
            assert link.peer is not None
            assert len(link.peer.finals[again].orders) == 3
        assert all(link.rejected == 0 for link, _ in homes)
    finally:
        for link, _ in homes:
            await link.async_stop()


async def test_a_short_drop_raises_no_repair_and_resends_the_bid(
    hass: HomeAssistant, mosquitto: Broker
) -> None:
    """A broker restart shorter than ``BROKER_GRACE_S`` raises no repair; the bid made
    while it was away goes out on reconnecting and the slot trades with every home."""
    assert BROKER_GRACE_S >= 10
    clock = Clock()
    homes = await _community(hass, mosquitto, clock, 3)
    registry = ir.async_get(hass)
    raised: list[Any] = []
    try:
        mosquitto.stop()
        await _until(
            lambda: all(link.broker_state.status is not BrokerStatus.CONNECTED for link, _ in homes)
        )
        clock.now += 60_000
        slot = await _submit(homes, clock)
        mosquitto.start()
        while not all(link.broker_state.status is BrokerStatus.CONNECTED for link, _ in homes):
            raised.append(registry.async_get_issue(DOMAIN, ISSUE_BROKER))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # every home resent its bid on reconnecting
        assert [issue for issue in raised if issue is not None] == []
        await _run(homes, clock, slot)
        finals = [_final(out, slot) for _, out in homes]
        assert all(len(f) == 1 for f in finals)
        for link, _ in homes:
            assert link.peer is not None
            assert len(link.peer.finals[slot].orders) == 3  # every bid made it
        await asyncio.sleep(0.2)
        assert registry.async_get_issue(DOMAIN, ISSUE_BROKER) is None
        assert all(link._broker_grace is None for link, _ in homes)
    finally:
        for link, _ in homes:
            await link.async_stop()


async def test_refused_credentials_raise_a_named_repair(
    hass: HomeAssistant, mosquitto_factory: Callable[..., Broker]
) -> None:
    broker = mosquitto_factory(users={"anna": "right"})
    clock = Clock()
    config = BrokerConfig.from_url(broker.url, username="anna", password="wrong")
    link = FederationLink(
        hass,
        "entry_creds",
        make_identity("creds"),
        MqttCarrier(hass.loop, config),
        clock=clock,
        schedule=False,
    )
    await link.async_found("Locked street", rules(), "")
    link.async_start()
    registry = ir.async_get(hass)
    try:
        await _until(lambda: registry.async_get_issue(DOMAIN, ISSUE_BROKER) is not None)
        issue = registry.async_get_issue(DOMAIN, ISSUE_BROKER)
        assert issue is not None
        # Mosquitto 2.0 answers a wrong password with "Not authorized", other brokers
        # with "Bad user name or password": both are named.
        assert issue.translation_key in {"broker_bad_credentials", "broker_not_authorized"}
        assert "wrong" not in str(issue.translation_placeholders)
        assert "wrong" not in repr(config)
    finally:
        await link.async_stop()
    assert registry.async_get_issue(DOMAIN, ISSUE_BROKER) is None  # stopped: not connecting


async def test_a_restarted_home_keeps_its_community_key(
    hass: HomeAssistant, mosquitto: Broker
) -> None:
    """The community keys are saved with the link: a home rebuilt from its store (a restart)
    opens the community's frames at once and trades again without a new grant."""
    clock = Clock()
    homes = await _community(hass, mosquitto, clock, 2)
    try:
        link, _ = homes[1]
        key = link.snapshot()["carrier"]["keys"]
        await link.async_stop()
        again, outcomes = _link(hass, "m1", mosquitto, clock)
        assert await again.async_load() == "member"
        assert again.snapshot()["carrier"]["keys"] == key
        again.async_start()
        await _connected(again)
        homes[1] = (again, outcomes)
        await asyncio.sleep(0.3)
        slot = await _run_slot(homes, clock)
        assert all(len(_final(out, slot)) == 1 for _, out in homes)
    finally:
        for link, _ in homes:
            await link.async_stop()


async def test_what_a_restarted_home_sends_at_start_goes_out_once_connected(
    hass: HomeAssistant, mosquitto: Broker
) -> None:
    """A home started again (a restart, or the reload after adding an asset) sends its
    catch-up, its open settlements and its ledger request at once, before its new broker
    connection is up: they must go out once it connects, not be lost. Here the home missed
    a slot the others finalised; it learns it from that first catch-up alone (no tick)."""
    clock = Clock()
    homes = await _community(hass, mosquitto, clock, 3)
    try:
        away, _ = homes[2]
        await away.async_stop()
        slot = await _run_slot(homes[:2], clock)
        assert all(len(_final(out, slot)) == 1 for _, out in homes[:2])
        again, outcomes = _link(hass, "m2", mosquitto, clock)
        assert await again.async_load() == "member"
        again.async_start()
        homes[2] = (again, outcomes)
        await _connected(again)
        await _until(lambda: len(_final(outcomes, slot)) == 1, 5)
        assert _final(outcomes, slot)[0].result == _final(homes[0][1], slot)[0].result
    finally:
        for link, _ in homes:
            await link.async_stop()


async def test_carrier_without_a_peer(hass: HomeAssistant) -> None:
    """Before a peer is bound the carrier delivers nothing; damaged stored keys are
    replaced by waiting for a grant; it is never ready without a broker."""
    carrier = MqttCarrier(hass.loop, BrokerConfig.from_url("mqtt://127.0.0.1:9"))
    assert carrier.state.status is BrokerStatus.STOPPED
    parcels, events = carrier.package([], 0)
    assert (parcels, events) == ([], [])
    assert await carrier.async_deliver(Parcel("all", b"x")) == 0
    assert await carrier.async_info("mqtt:x") is None
    assert await carrier.async_ready(0.05) is False
    assert carrier.snapshot() is None
    assert carrier.invitation_fields() == {"broker": "mqtt://127.0.0.1:9", "prefix": "peer_energy"}
    link = FederationLink(hass, "entry_x", make_identity("x"), carrier, schedule=False)
    await link.async_found("Street", rules(), "")
    assert link.peer is not None
    broken = {"keys": {"community": link.peer.community_id, "keys": [{"epoch": 0}]}}
    carrier.bind(link.peer, broken)  # logged, then a fresh chain (a founder makes its key)
    assert carrier.channel is not None
    carrier.bind(None)
    assert carrier.transport is None
    assert await link.async_probe_self() is True  # nothing to probe on a broker
    await link.async_stop()
