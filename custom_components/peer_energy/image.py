"""Image: the QR code of the home's most recent open invitation ("Latest invitation").

The picture is the invitation string created by ``peer_energy.create_invitation`` as a QR
code, for a neighbour to scan from the screen. The entity is unavailable until an
invitation exists, once it has been used (the neighbour joined) or when it expires. It
survives a restart: the peer keeps its invitations, secrets included, in the private
federation store (where the invitation already had to be kept to be usable after a
restart) in the order they were made, so no secret is stored anywhere new.

While it shows an invitation, its attributes ``expires`` (ISO 8601 in Home Assistant's
time zone) and ``expires_local`` (date, time and zone) say until when it can be used.
The picture holds the one-time secret: it is a diagnostic entity, and the invitation is
nowhere else but in the response of the action that created it (no notification).

While it is unavailable it has no entity picture (so no page asks for one), and a request
that still comes (an old link, an invitation expiring meanwhile) gets a blank picture
instead of Home Assistant's "500 Internal Server Error".
"""

from __future__ import annotations

from datetime import datetime
import struct
import zlib

from homeassistant.components.image import ImageEntity, ImageEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.util import dt as dt_util

from .entity import home_device_info
from .federation import EVENT_PEER_JOINED, SIGNAL_INVITATION_CREATED
from .federation_setup import invitation_expiry
from .qr import invitation_qr_png
from .runtime import PeerEnergyConfigEntry

PARALLEL_UPDATES = 0


def _blank_png() -> bytes:
    """A 1 x 1 transparent PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 8-bit RGBA
    pixels = zlib.compress(b"\x00\x00\x00\x00\x00")  # filter byte, one transparent pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


BLANK_PNG = _blank_png()

INVITATION_IMAGE = ImageEntityDescription(
    key="latest_invitation",
    translation_key="latest_invitation",
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: PeerEnergyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the home's invitation image."""
    async_add_entities([PeerEnergyInvitationImage(hass, entry)])


class PeerEnergyInvitationImage(ImageEntity):
    """QR code of the latest invitation while it can still be used."""

    _attr_has_entity_name = True
    _attr_content_type = "image/png"

    def __init__(self, hass: HomeAssistant, entry: PeerEnergyConfigEntry) -> None:
        """One per entry, on the home device."""
        super().__init__(hass)
        self._entry = entry
        self.entity_description = INVITATION_IMAGE
        self._attr_unique_id = f"{entry.entry_id}_{INVITATION_IMAGE.key}"
        self._attr_device_info = home_device_info(entry)
        self._shown: str | None = None  # invitation id currently drawn
        self._text: str | None = None
        self._png: bytes | None = None
        self._unsub_expiry: CALLBACK_TYPE | None = None
        self._attr_available = False

    async def async_added_to_hass(self) -> None:
        """Follow new invitations, joins (an invitation used) and the expiry."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass,
                f"{SIGNAL_INVITATION_CREATED}_{self._entry.entry_id}",
                self._async_changed,
            )
        )
        self.async_on_remove(self.hass.bus.async_listen(EVENT_PEER_JOINED, self._async_joined))
        self.async_on_remove(self._cancel_expiry)
        self._refresh()

    @callback
    def _cancel_expiry(self) -> None:
        if self._unsub_expiry is not None:
            self._unsub_expiry()
            self._unsub_expiry = None

    @callback
    def _refresh(self) -> None:
        """Recompute what is shown from the federation link."""
        link = self._entry.runtime_data.federation
        inv = link.latest_open_invitation() if link is not None else None
        if inv is None:
            self._shown = self._text = None
            self._png = None
            self._attr_available = False
            self._attr_extra_state_attributes = {}
            self._cancel_expiry()
            return
        self._attr_available = True
        if inv.invitation_id != self._shown:
            self._shown = inv.invitation_id
            self._text = inv.encode()
            self._png = None
            self._attr_extra_state_attributes = invitation_expiry(inv.expires_ms)
            self._attr_image_last_updated = dt_util.utcnow()
            self._cancel_expiry()
            # One millisecond after the expiry, when ``expired`` becomes true.
            expiry = dt_util.utc_from_timestamp((inv.expires_ms + 1) / 1000)
            self._unsub_expiry = async_track_point_in_utc_time(
                self.hass, self._async_expired, expiry
            )

    @callback
    def _async_changed(self) -> None:
        self._refresh()
        self.async_write_ha_state()

    @callback
    def _async_joined(self, _event: Event) -> None:
        self._async_changed()

    @callback
    def _async_expired(self, _now: datetime) -> None:
        self._unsub_expiry = None
        self._async_changed()

    @property
    def entity_picture(self) -> str | None:
        """The picture's URL, only while there is an invitation to show."""
        return super().entity_picture if self._attr_available else None

    async def async_image(self) -> bytes:
        """The PNG (drawn in the executor once per invitation); blank when unavailable."""
        self._refresh()
        text, shown = self._text, self._shown
        if text is None:
            return BLANK_PNG
        if self._png is None:
            png = await self.hass.async_add_executor_job(invitation_qr_png, text)
            if self._shown == shown:
                self._png = png
            return png
        return self._png
