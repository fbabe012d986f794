"""Binary sensors: the market's price peak (for plugs that should wait it out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import PeerEnergyMarketEntity
from .market import price_to_major
from .runtime import PeerEnergyConfigEntry

if TYPE_CHECKING:
    from .market import SlotClock

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class PeerEnergyBinarySensorDescription(BinarySensorEntityDescription):
    """A market binary sensor of the home device."""

    is_on_fn: Callable[[SlotClock], bool | None]
    attrs_fn: Callable[[SlotClock], dict[str, Any]]


def _peak_attrs(clock: SlotClock) -> dict[str, Any]:
    average = clock.average_price()
    current = clock.current
    threshold = None if average is None else average * (100 + clock.peak_margin_pct) // 100
    return {
        "price": price_to_major(None if current is None else current.price, clock.currency),
        "average_price": price_to_major(average, clock.currency),
        "threshold": price_to_major(threshold, clock.currency),
        "peak_margin_pct": clock.peak_margin_pct,
    }


BINARY_SENSORS: tuple[PeerEnergyBinarySensorDescription, ...] = (
    PeerEnergyBinarySensorDescription(
        key="price_peak",
        translation_key="price_peak",
        is_on_fn=lambda clock: clock.price_peak(),
        attrs_fn=_peak_attrs,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: PeerEnergyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the home's market binary sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(
        PeerEnergyBinarySensor(coordinator, description) for description in BINARY_SENSORS
    )


class PeerEnergyBinarySensor(PeerEnergyMarketEntity, BinarySensorEntity):
    """On while the current clearing price is above the day's average by the peak margin."""

    entity_description: PeerEnergyBinarySensorDescription

    @property
    def is_on(self) -> bool | None:
        """None (unknown) until a price and an average exist."""
        return self.entity_description.is_on_fn(self.market)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Price, average and threshold in the entry's currency per kWh."""
        return self.entity_description.attrs_fn(self.market)
