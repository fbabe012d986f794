"""The MQTT transport against a real Mosquitto: three homes trade a slot over the broker,
a spy on ``#`` reads nothing, and the broker's state (credentials, reachability,
reconnection) comes out as a status a repair can name."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import threading
from typing import Any

from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
import pytest

from custom_components.peer_energy.core.federation.channel import (
    BrokerChannel,
    found_on_broker,
    join_on_broker,
)
from custom_components.peer_energy.core.federation.protocol import Output, SlotCleared
from custom_components.peer_energy.mqtt_transport import (
    BrokerConfig,
    BrokerError,
    BrokerState,
    BrokerStatus,
    MqttHome,
    MqttTransport,
)
from tests.federation.broker_helpers import seeded_random32
from tests.federation.helpers import START_MS, make_identity, orders_for, rules, secret

from .conftest import Broker


class Clock:
    """The homes' shared fake clock (Unix ms)."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


class Home:
    """A broker channel on a real MQTT transport."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: BrokerConfig,
        channel: BrokerChannel,
        clock: Clock,
    ) -> None:
        self.events: list[Any] = []
        self.states: list[BrokerState] = []
        self.transport = MqttTransport(
            loop,
            config,
            community=channel.peer.community_id,
            inbox=channel.inbox,
            client_id=f"pe-{channel.inbox[:12]}",
            on_frame=lambda route, frame: self.home.frame(route, frame),
            on_status=self.states.append,
        )
        self.home = MqttHome(channel, self.transport, clock_ms=clock, on_events=self.events.extend)

    @property
    def peer(self) -> Any:
        return self.home.channel.peer


async def _until(cond: Callable[[], bool], wait_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + wait_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Spy:
    """A client subscribed to ``#``: everything the broker carries."""

    def __init__(self, broker: Broker) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id="spy")
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_message = self._message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _message(self, client: Client, userdata: Any, msg: MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _community(broker: Broker, clock: Clock, n: int) -> list[Home]:
    loop = asyncio.get_running_loop()
    config = BrokerConfig.from_url(broker.url)
    founder = found_on_broker(
        make_identity("m0"),
        name="Mqtt street",
        rules=rules(),
        now_ms=clock.now,
        nonce=b"nonce-mqtt-01234",
        random32=seeded_random32(1),
    )
    homes = [Home(loop, config, founder, clock)]
    await homes[0].transport.async_start()
    await _until(lambda: homes[0].transport.state.status is BrokerStatus.CONNECTED)
    for i in range(1, n):
        inv = founder.peer.invite(secret(f"m{i}"), clock.now)
        channel, outs = join_on_broker(make_identity(f"m{i}"), inv.encode(), now_ms=clock.now)
        home = Home(loop, config, channel, clock)
        await home.transport.async_start()
        await _until(lambda h=home: h.transport.state.status is BrokerStatus.CONNECTED)
        home.home.handle(outs, clock.now)
        await _until(lambda i=i: len(founder.peer.roster()) == i + 1)
        homes.append(home)
    await _until(lambda: all(len(h.peer.roster()) == n for h in homes))
    return homes


async def _run_to(homes: list[Home], clock: Clock, end_ms: int, step_ms: int = 100) -> None:
    while clock.now < end_ms:
        clock.now = min(end_ms, clock.now + step_ms)
        for h in homes:
            if h.peer.next_wakeup_ms() <= clock.now:
                h.home.tick()
        await asyncio.sleep(0.01)


async def test_three_homes_trade_a_slot_and_the_broker_reads_nothing(
    mosquitto: Broker,
) -> None:
    clock = Clock()
    spy = Spy(mosquitto)
    homes = await _community(mosquitto, clock, 3)
    try:
        peers = [h.peer for h in homes]
        r = peers[0].rules
        slot = (clock.now // 1000 + r.gate_closure_lead_s + 1) // r.slot_seconds * r.slot_seconds
        while r.gate_closure_ms(slot) <= clock.now + 1000:
            slot += r.slot_seconds
        for i, h in enumerate(homes):
            out: list[Output] = h.peer.submit_orders(slot, orders_for(h.peer, i, slot), clock.now)
            h.home.handle(out, clock.now)
        await asyncio.sleep(0.2)
        clock.now = r.gate_closure_ms(slot) - 100
        end = r.gate_closure_ms(slot) + r.sync_window_ms + r.attest_window_ms + 500
        await _run_to(homes, clock, end)
        finals = []
        for h in homes:
            cleared = [e for e in h.events if isinstance(e, SlotCleared) and e.final.slot == slot]
            assert len(cleared) == 1
            finals.append((cleared[0].final.book_hash, cleared[0].final.result_hash))
        assert len(set(finals)) == 1
        final = peers[0].finals[slot]
        assert final.orders  # the slot had orders
    finally:
        for h in homes:
            await h.transport.async_stop()
        spy.stop()
    assert len(spy.messages) > 10
    clear = [p.member_id for p in peers] + [peers[0].community_id]
    clear += [final.book_hash, final.result_hash]
    words = [
        b'"type"',
        b'"orders"',
        b"price",
        b"energy",
        b'"sender"',
        b"Mqtt street",
        b'{"community"',
        b'"payload"',
    ]
    for topic, payload in spy.messages:
        for s in clear:
            assert s not in topic
            assert s.encode() not in payload
            assert bytes.fromhex(s) not in payload
        for w in words:
            assert w not in payload
        for order in final.orders:
            assert order.order_id.encode() not in payload
    assert all(not t.startswith("$") for t, _ in spy.messages)
    assert all(h.transport.published > 0 for h in homes)


async def test_bad_credentials_are_named(mosquitto_factory: Callable[..., Broker]) -> None:
    broker = mosquitto_factory(users={"anna": "right"})
    states: list[BrokerState] = []
    loop = asyncio.get_running_loop()
    transport = MqttTransport(
        loop,
        BrokerConfig.from_url(broker.url, username="anna", password="wrong"),
        community="c" * 32,
        inbox="a" * 32,
        client_id="pe-bad",
        on_frame=lambda r, f: None,
        on_status=states.append,
    )
    await transport.async_start()
    try:
        # Mosquitto 2.0 answers a wrong password with "Not authorized" (0x87), other
        # brokers with "Bad user name or password" (0x86): both are a refusal to name.
        refused = {BrokerStatus.BAD_CREDENTIALS, BrokerStatus.NOT_AUTHORIZED}
        await _until(lambda: transport.state.status in refused)
        await asyncio.sleep(1.5)  # paho retries (backoff): the reason stays the refusal
        assert transport.state.status in refused
        assert transport.state.reason
        assert not transport.publish("all", b"x")
    finally:
        await transport.async_stop()
    assert states[0].status is BrokerStatus.CONNECTING
    assert BrokerStatus.DISCONNECTED not in {s.status for s in states}
    assert transport.state.status is BrokerStatus.STOPPED
    # the right password connects
    ok = MqttTransport(
        loop,
        BrokerConfig.from_url(broker.url, username="anna", password="right"),
        community="c" * 32,
        inbox="a" * 32,
        client_id="pe-good",
        on_frame=lambda r, f: None,
        on_status=lambda s: None,
    )
    await ok.async_start()
    try:
        await _until(lambda: ok.state.status is BrokerStatus.CONNECTED)
    finally:
        await ok.async_stop()


async def test_unreachable_then_reconnects(mosquitto_factory: Callable[..., Broker]) -> None:
    broker = mosquitto_factory()
    frames: list[tuple[str, bytes]] = []
    loop = asyncio.get_running_loop()
    transport = MqttTransport(
        loop,
        BrokerConfig.from_url(broker.url),
        community="c" * 32,
        inbox="b" * 32,
        client_id="pe-re",
        on_frame=lambda r, f: frames.append((r, f)),
        on_status=lambda s: None,
    )
    await transport.async_start()
    try:
        await _until(lambda: transport.state.status is BrokerStatus.CONNECTED)
        broker.stop()
        await _until(
            lambda: transport.state.status in {BrokerStatus.DISCONNECTED, BrokerStatus.UNREACHABLE}
        )
        await _until(lambda: transport.state.status is BrokerStatus.UNREACHABLE, wait_s=15)
        broker.start()
        await _until(lambda: transport.state.status is BrokerStatus.CONNECTED, wait_s=15)
        # subscriptions are back: a frame to our inbox arrives
        other = Client(CallbackAPIVersion.VERSION2, client_id="sender")
        other.connect(broker.host, broker.port)
        other.loop_start()
        other.publish(transport.inbox_topic, b"\x01frame", qos=1).wait_for_publish(5)
        other.disconnect()
        other.loop_stop()
        await _until(lambda: frames == [("b" * 32, b"\x01frame")])
    finally:
        await transport.async_stop()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.example", ("broker.example", 1883, False)),
        ("mqtts://broker.example", ("broker.example", 8883, True)),
        ("mqtt://127.0.0.1:1884/", ("127.0.0.1", 1884, False)),
        ("mqtts://[::1]:8884", ("::1", 8884, True)),
    ],
)
def test_broker_urls(url: str, expected: tuple[str, int, bool]) -> None:
    config = BrokerConfig.from_url(url, username="u", password="secret")
    assert (config.host, config.port, config.tls) == expected
    assert "secret" not in repr(config)
    assert "secret" not in config.url
    assert BrokerConfig.from_url(config.url).url == config.url


@pytest.mark.parametrize(
    "url",
    [
        "http://broker",
        "mqtt://",
        "mqtt://user:pw@broker",
        "mqtt://broker/topic",
        "mqtt://broker:99999",
        "mqtt://broker?x=1",
    ],
)
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(BrokerError):
        BrokerConfig.from_url(url)


@pytest.mark.parametrize("prefix", ["", "a/#", "+", "$SYS", "a//b", "/a", "x" * 65])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(BrokerError):
        BrokerConfig.from_url("mqtt://broker", prefix=prefix)


async def test_retained_frames_are_dropped(mosquitto: Broker) -> None:
    frames: list[tuple[str, bytes]] = []
    loop = asyncio.get_running_loop()
    transport = MqttTransport(
        loop,
        BrokerConfig.from_url(mosquitto.url),
        community="c" * 32,
        inbox="d" * 32,
        client_id="pe-retain",
        on_frame=lambda r, f: frames.append((r, f)),
        on_status=lambda s: None,
    )
    other = Client(CallbackAPIVersion.VERSION2, client_id="retainer")
    other.connect(mosquitto.host, mosquitto.port)
    other.loop_start()
    other.publish(transport.inbox_topic, b"\x01old", qos=1, retain=True).wait_for_publish(5)
    await transport.async_start()
    try:
        await _until(lambda: transport.state.status is BrokerStatus.CONNECTED)
        other.publish(transport.community_topic, b"\x01new", qos=1).wait_for_publish(5)
        await _until(lambda: len(frames) == 1)
        await asyncio.sleep(0.2)
        assert frames == [("all", b"\x01new")]  # the retained one never reached us
    finally:
        other.disconnect()
        other.loop_stop()
        await transport.async_stop()


def test_a_bug_handling_a_frame_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def incoming(self, frame: bytes, now_ms: int) -> list[Any]:
            raise RuntimeError("bug")

    home = MqttHome(Broken(), None, clock_ms=lambda: 0, on_events=lambda e: None)  # type: ignore[arg-type]
    home.frame("all", b"x")
    assert "could not handle a frame" in caplog.text
