"""The invitation's QR code: it reads back as the invitation, and the "Latest invitation"
image follows invitations (new, used by a joining neighbour, expired)."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
import io
from typing import Any

from homeassistant.components import persistent_notification
from homeassistant.const import STATE_UNAVAILABLE, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
import numpy as np
from PIL import Image
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed
import zxingcpp

from custom_components.peer_energy.const import DOMAIN
from custom_components.peer_energy.core.federation.community import Invitation
from custom_components.peer_energy.qr import invitation_qr_png
from custom_components.peer_energy.runtime import PeerEnergyConfigEntry

from .conftest import Clock, Home, HomeFactory, invite, join


def read_qr(png: bytes) -> list[str]:
    """Every QR code a real decoder (ZXing) finds in a PNG."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    return [r.text for r in zxingcpp.read_barcodes(pixels) if r.format == zxingcpp.QRCode]


def test_qr_reads_back_as_the_invitation() -> None:
    """A real invitation string (with its 32-byte secret) survives the QR round trip."""
    text = Invitation(
        "c0ffee01" * 4, "ab" * 32, "http://192.168.1.20:8123", bytes(range(32)), 1_900_000_000_000
    ).encode()
    assert text.startswith("peerenergy1:")
    assert read_qr(invitation_qr_png(text)) == [text]
    # A different string gives a different code (the decoder is not just echoing).
    other = text[:-1] + ("A" if text[-1] != "A" else "B")
    assert read_qr(invitation_qr_png(other)) == [other]
    with pytest.raises(ValueError, match="nothing"):
        invitation_qr_png("")


def _image_entity_id(hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> str:
    registry = er.async_get(hass)
    entity_id = registry.async_get_entity_id("image", DOMAIN, f"{entry.entry_id}_latest_invitation")
    assert entity_id is not None
    reg = registry.async_get(entity_id)
    assert reg is not None
    assert reg.entity_category is EntityCategory.DIAGNOSTIC
    assert reg.translation_key == "latest_invitation"
    return entity_id


async def _fetch(client: Any, hass: HomeAssistant, entity_id: str) -> bytes:
    state = hass.states.get(entity_id)
    assert state is not None
    token = state.attributes["access_token"]
    resp = await client.get(f"/api/image_proxy/{entity_id}?token={token}")
    assert resp.status == HTTPStatus.OK
    assert resp.content_type == "image/png"
    return bytes(await resp.read())


async def test_latest_invitation_image_follows_invitations(
    hass: HomeAssistant,
    hass_client_no_auth: Any,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """Unavailable until an invitation exists; shows its QR; unavailable once used or expired."""
    entry, a = home_a
    entity_id = _image_entity_id(hass, entry)
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state == STATE_UNAVAILABLE
    client = await hass_client_no_auth()

    first = await invite(hass)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state != STATE_UNAVAILABLE
    assert state.attributes["friendly_name"].endswith("Latest invitation")
    assert read_qr(await _fetch(client, hass, entity_id)) == [first]
    # The secret is in the picture (and the action's response), in no notification.
    notes = persistent_notification._async_get_or_create_notifications(hass)
    assert not [n for n in notes.values() if first in n["message"]]
    expires = Invitation.decode(first).expires_ms
    local = dt_util.as_local(dt_util.utc_from_timestamp(expires / 1000))
    assert state.attributes["expires"] == local.isoformat(timespec="seconds")
    assert state.attributes["expires_local"] == local.strftime("%Y-%m-%d %H:%M %Z")

    # A newer invitation replaces the picture.
    second = await invite(hass)
    await hass.async_block_till_done()
    assert read_qr(await _fetch(client, hass, entity_id)) == [second]

    # A neighbour joins with a fresh invitation (the helper creates it): used, so unavailable.
    b = await make_home("B")
    await join(hass, a, b, [])
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state == STATE_UNAVAILABLE
    assert "expires" not in state.attributes

    # A new one is shown until it expires (the link's clock passes the expiry, then the timer).
    response = await hass.services.async_call(
        DOMAIN, "create_invitation", {"ttl_hours": 1}, blocking=True, return_response=True
    )
    assert response is not None
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state != STATE_UNAVAILABLE
    assert read_qr(await _fetch(client, hass, entity_id)) == [response["invitation"]]
    expires = Invitation.decode(str(response["invitation"])).expires_ms
    clock.now = expires + 1
    async_fire_time_changed(hass, dt_util.utc_from_timestamp(expires / 1000) + timedelta(seconds=1))
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state == STATE_UNAVAILABLE


async def test_latest_invitation_image_survives_a_restart(
    hass: HomeAssistant,
    hass_client_no_auth: Any,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
    make_home: HomeFactory,
) -> None:
    """After a reload the image shows the newest open invitation again (the peer keeps its
    invitations in the private federation store, in the order they were made); one used
    after the restart makes it unavailable, and so does a restart after that."""
    entry, a = home_a
    entity_id = _image_entity_id(hass, entry)
    client = await hass_client_no_auth()
    await invite(hass)
    newest = await invite(hass)
    await hass.async_block_till_done()

    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state != STATE_UNAVAILABLE
    assert read_qr(await _fetch(client, hass, entity_id)) == [newest]

    # A neighbour uses exactly that invitation: unavailable, also after another restart.
    b = await make_home("B")
    assert await b.link.async_join(newest, b.address) == 202
    assert await b.link.async_wait_joined(2) is None
    await b.link.async_drain()  # the acknowledgement admits B (the invitation is used)
    await entry.runtime_data.link.async_drain()
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state == STATE_UNAVAILABLE
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state == STATE_UNAVAILABLE


async def test_unavailable_image_never_answers_500(
    hass: HomeAssistant,
    hass_client: Any,
    clock: Clock,
    home_a: tuple[PeerEnergyConfigEntry, Home],
) -> None:
    """Without an open invitation the entity has no picture for pages to load, and a
    request that still comes (an old link) gets a blank picture, not a server error."""
    entry, _a = home_a
    entity_id = _image_entity_id(hass, entry)
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.state == STATE_UNAVAILABLE
    assert "entity_picture" not in state.attributes
    client = await hass_client()
    resp = await client.get(f"/api/image_proxy/{entity_id}")
    assert resp.status == HTTPStatus.OK
    blank = Image.open(io.BytesIO(await resp.read()))
    assert blank.size == (1, 1)
    assert blank.getpixel((0, 0)) == (0, 0, 0, 0)

    await invite(hass)
    await hass.async_block_till_done()
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes["entity_picture"].startswith(f"/api/image_proxy/{entity_id}?token=")
