"""The community model and the seeded community builder.

A :class:`Community` is everything a run needs: the slot grid, per-home devices and per-home
time series (integer Wh per slot), the tariff per slot and the carbon-intensity proxy. The
same :class:`Options` (seed included) always build the same community, bit for bit.

Units follow the engine: energy in integer Wh per slot, power in integer W, prices in integer
euro cents per kWh, money in milli-cents (Wh x ct/kWh).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
import pandas as pd  # type: ignore[import-untyped]

from . import data

ORIENTATIONS = ((30, 180), (35, 135), (35, 225), (20, 90), (20, 270), (40, 180))


@dataclass(frozen=True)
class Battery:
    """A home battery: capacity, charge/discharge power, round-trip efficiency, reserve.

    Losses are booked on charging (``soc += charge x efficiency``, ``soc -= discharge``),
    the convention of the engine's battery agent; the state of charge never goes below
    ``reserve_pct`` of the capacity (the owner's backup reserve) in any run.
    """

    capacity_wh: int
    power_w: int
    efficiency_pct: int = 90
    initial_soc_wh: int = 0
    reserve_pct: int = 20

    @property
    def reserve_wh(self) -> int:
        return self.capacity_wh * self.reserve_pct // 100

    def to_dict(self) -> dict[str, int]:
        return {
            "capacity_wh": self.capacity_wh,
            "power_w": self.power_w,
            "efficiency_pct": self.efficiency_pct,
            "initial_soc_wh": self.initial_soc_wh,
            "reserve_pct": self.reserve_pct,
        }


@dataclass(frozen=True)
class EVSession:
    """The car is plugged in from slot ``arrive`` to ``depart`` (exclusive) and needs
    ``energy_wh`` by then (slot indices into the community's slot grid)."""

    arrive: int
    depart: int
    energy_wh: int


@dataclass(frozen=True)
class EV:
    """An EV charger (max power) and the car's charging sessions."""

    charger_w: int
    sessions: tuple[EVSession, ...]


@dataclass(frozen=True)
class FlexTask:
    """A deferrable plug load: ``energy_wh`` to run between slots ``earliest`` and
    ``deadline`` (exclusive) at up to ``power_w`` (interruptible, like a water heater or a
    pool pump; a washing machine with a start delay is approximated the same way)."""

    earliest: int
    deadline: int
    energy_wh: int
    power_w: int


@dataclass(frozen=True)
class Home:
    """One home's devices and owner preferences (its time series live in the community)."""

    home_id: str
    pv_kwp: float = 0.0
    battery: Battery | None = None
    ev: EV | None = None
    flex: tuple[FlexTask, ...] = ()
    clean_only: bool = False
    annual_kwh: float = 0.0


@dataclass
class Community:
    """A community and its data on a slot grid (see the module docstring for units)."""

    slot_seconds: int
    slots: NDArray[Any]  # (T,) int64 Unix seconds of each slot start
    homes: tuple[Home, ...]
    load_wh: NDArray[Any]  # (H, T) int64 inflexible household load
    pv_wh: NDArray[Any]  # (H, T) int64 PV generation
    import_price: NDArray[Any]  # (T,) int64 retail price, ct/kWh
    feed_in: NDArray[Any]  # (T,) int64 feed-in tariff, ct/kWh
    carbon: NDArray[Any]  # (T,) float g CO2/kWh (grid proxy)
    day_ahead: NDArray[Any] | None = None  # (T,) float ct/kWh, for the report
    meta: dict[str, Any] = field(default_factory=dict)
    # What the homes expect (H, T), when it differs from what happens; None: exact forecasts.
    load_fc_wh: NDArray[Any] | None = None
    pv_fc_wh: NDArray[Any] | None = None
    load_sd_wh: NDArray[Any] | None = None  # standard deviations of those forecasts
    pv_sd_wh: NDArray[Any] | None = None
    price_scale: int = 1  # price units per euro cent (100: prices in hundredths of a cent)

    @property
    def n_homes(self) -> int:
        return len(self.homes)

    @property
    def n_slots(self) -> int:
        return int(self.slots.size)

    @property
    def forecast_error(self) -> bool:
        """Whether the homes plan with forecasts that differ from what happens."""
        return self.load_fc_wh is not None or self.pv_fc_wh is not None

    def forecasts(self) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
        """(load, PV, load sd, PV sd) the homes plan with: the actuals and zero spread when
        the community has no forecasts of its own."""
        zero = np.zeros_like(self.load_wh)
        return (
            self.load_wh if self.load_fc_wh is None else self.load_fc_wh,
            self.pv_wh if self.pv_fc_wh is None else self.pv_fc_wh,
            zero if self.load_sd_wh is None else self.load_sd_wh,
            zero if self.pv_sd_wh is None else self.pv_sd_wh,
        )

    def slot_hours(self) -> float:
        return self.slot_seconds / 3600.0

    def max_wh(self, power_w: int) -> int:
        """Energy a device of ``power_w`` can move in one slot."""
        return power_w * self.slot_seconds // 3600

    def check(self) -> None:
        """Raise ``ValueError`` if the community is inconsistent."""
        h, t = self.n_homes, self.n_slots
        if t == 0 or h == 0:
            raise ValueError("a community needs at least one home and one slot")
        if 86_400 % self.slot_seconds or self.slot_seconds % 60:
            raise ValueError("the slot length must be whole minutes and divide a day")
        for name in ("load_wh", "pv_wh"):
            arr = getattr(self, name)
            if arr.shape != (h, t):
                raise ValueError(f"{name} must have shape (homes, slots) = {(h, t)}")
            if (arr < 0).any():
                raise ValueError(f"{name} must not be negative")
        for name in ("load_fc_wh", "pv_fc_wh", "load_sd_wh", "pv_sd_wh"):
            arr = getattr(self, name)
            if arr is not None and (arr.shape != (h, t) or (arr < 0).any()):
                raise ValueError(f"{name} must have shape (homes, slots) and no negative value")
        if self.price_scale < 1:
            raise ValueError("price_scale must be at least 1")
        for name in ("import_price", "feed_in", "carbon"):
            if getattr(self, name).shape != (t,):
                raise ValueError(f"{name} must have one value per slot")
        if (self.feed_in > self.import_price).any():
            raise ValueError("the feed-in tariff must not exceed the import price")
        if np.any(np.diff(self.slots) != self.slot_seconds):
            raise ValueError("slots must be consecutive")
        ids = [home.home_id for home in self.homes]
        if len(set(ids)) != len(ids):
            raise ValueError("home ids must be unique")
        for home in self.homes:
            _check_home(home, t, self.slot_seconds)


def _check_home(home: Home, t: int, slot_seconds: int) -> None:
    b = home.battery
    if b is not None and not (
        b.capacity_wh > 0
        and b.power_w > 0
        and 50 <= b.efficiency_pct <= 100
        and 0 <= b.reserve_pct < 100
        and b.reserve_wh <= b.initial_soc_wh <= b.capacity_wh
    ):
        raise ValueError(f"home {home.home_id}: invalid battery {b}")
    if home.ev is not None:
        last = 0
        for s in home.ev.sessions:
            if not (last <= s.arrive < s.depart <= t and s.energy_wh >= 0):
                raise ValueError(f"home {home.home_id}: EV sessions must be ordered, in range")
            if s.energy_wh > home.ev.charger_w * slot_seconds // 3600 * (s.depart - s.arrive):
                raise ValueError(f"home {home.home_id}: an EV session needs more than it can get")
            last = s.depart
    for task in home.flex:
        if not (0 <= task.earliest < task.deadline <= t and task.power_w > 0):
            raise ValueError(f"home {home.home_id}: invalid flexible task {task}")
        if task.energy_wh > task.power_w * slot_seconds // 3600 * (task.deadline - task.earliest):
            raise ValueError(f"home {home.home_id}: a flexible task cannot finish in its window")


@dataclass(frozen=True)
class Options:
    """What the seeded builder needs; the defaults are the documented default run."""

    seed: int = 1
    homes: int = 50
    days: int = 7
    slot_minutes: int = 15
    pv_share: float = 0.5
    battery_share: float = 0.3
    ev_share: float = 0.3
    flex_share: float = 0.5
    clean_only_share: float = 0.2
    start: str = "2025-05-12"  # local date (Europe/Berlin) of the first day
    region: int = data.DEFAULT_REGION
    tariff: str = "fixed"  # "fixed" or "dynamic" (day-ahead + fixed charges)
    import_ct: int = 32
    feed_in_ct: int = 8
    charges_ct: int = 22  # network charges, levies and taxes on top of day-ahead (dynamic)
    forecast: str = "exact"  # "exact": homes know their load and PV; "noisy": forecast error

    def check(self) -> None:
        if self.homes < 1 or self.days < 1:
            raise ValueError("--homes and --days must be at least 1")
        if self.slot_minutes < 1 or 1440 % self.slot_minutes:
            raise ValueError("--slot-minutes must divide a day (e.g. 5, 15, 30, 60)")
        for name in ("pv_share", "battery_share", "ev_share", "flex_share", "clean_only_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name.replace('_', '-')} must be between 0 and 1")
        if self.tariff not in ("fixed", "dynamic"):
            raise ValueError("tariff must be fixed or dynamic")
        if self.forecast not in ("exact", "noisy"):
            raise ValueError("forecast must be exact or noisy")
        if not 0 <= self.feed_in_ct <= self.import_ct:
            raise ValueError("the feed-in tariff must be between 0 and the import price")


def _pick(rng: np.random.Generator, n: int, share: float) -> set[int]:
    return {int(x) for x in rng.permutation(n)[: round(share * n)]}


def _slot_of(hour: float, day: int, per_day: int) -> int:
    return day * per_day + round(hour * per_day / 24.0)


def _ev(
    rng: np.random.Generator, days: int, per_day: int, slot_seconds: int, weekdays: list[int]
) -> EV:
    charger_w = int(rng.choice([3700, 7400, 11000]))
    t = days * per_day
    sessions: list[EVSession] = []
    last = 0
    for day in range(days):
        if weekdays[day] >= 5 and rng.random() < 0.6:
            arrive = _slot_of(rng.normal(10.5, 1.5), day, per_day)
            depart = _slot_of(rng.normal(17.5, 1.5), day, per_day)
        else:
            arrive = _slot_of(rng.normal(18.0, 1.5), day, per_day)
            depart = _slot_of(24 + rng.normal(7.5, 0.75), day, per_day)
        arrive = max(arrive, last)
        depart = min(depart, t)
        if depart - arrive < 2:
            continue
        cap = charger_w * slot_seconds // 3600 * (depart - arrive)
        need = int(min(rng.uniform(4_000, 18_000), 0.8 * cap))
        sessions.append(EVSession(arrive, depart, need))
        last = depart
    return EV(charger_w, tuple(sessions))


def _flex(
    rng: np.random.Generator, days: int, per_day: int, slot_seconds: int
) -> tuple[FlexTask, ...]:
    tasks = []
    for day in range(days):
        if rng.random() > 0.85:
            continue
        earliest = _slot_of(rng.uniform(6.0, 10.0), day, per_day)
        deadline = _slot_of(rng.uniform(17.0, 22.0), day, per_day)
        power = int(rng.choice([1000, 2000, 3000]))
        energy = int(rng.uniform(800, 2500))
        cap = power * slot_seconds // 3600 * (deadline - earliest)
        tasks.append(FlexTask(earliest, deadline, min(energy, cap), power))
    return tuple(tasks)


def build(options: Options) -> Community:
    """Build the seeded community (same options, same community)."""
    options.check()
    rng = np.random.default_rng(options.seed)
    slot_seconds = options.slot_minutes * 60
    per_day = 86_400 // slot_seconds
    start = pd.Timestamp(options.start, tz=data.LOCAL_TZ)
    t0 = int(start.timestamp())
    t0 -= t0 % slot_seconds
    t = options.days * per_day
    slots = t0 + slot_seconds * np.arange(t, dtype=np.int64)
    weekdays = [(start + pd.Timedelta(days=d)).weekday() for d in range(options.days)]

    n = options.homes
    pv_homes = _pick(rng, n, options.pv_share)
    # batteries go to PV homes first (the usual pairing), then to others
    order = sorted(range(n), key=lambda i: (i not in pv_homes, rng.random()))
    battery_homes = set(order[: round(options.battery_share * n)])
    ev_homes = _pick(rng, n, options.ev_share)
    flex_homes = _pick(rng, n, options.flex_share)
    clean_homes = _pick(rng, n, options.clean_only_share)

    base = data.household_profile(slots, slot_seconds)
    pv_cache: dict[tuple[int, int], NDArray[Any]] = {}
    homes: list[Home] = []
    load = np.zeros((n, t), dtype=np.int64)
    pv = np.zeros((n, t), dtype=np.int64)
    load_fc = np.zeros((n, t), dtype=np.int64)
    load_sd = np.zeros((n, t), dtype=np.int64)
    pv_fc = np.zeros((n, t), dtype=np.int64)
    pv_sd = np.zeros((n, t), dtype=np.int64)
    hours = slot_seconds / 3600.0
    for i in range(n):
        home_rng = np.random.default_rng([options.seed, i])
        annual = float(np.clip(home_rng.lognormal(np.log(3200.0), 0.35), 1500.0, 8000.0))
        actual, mean, spread = data.household_load(base, annual, slot_seconds, home_rng)
        load[i] = np.rint(actual * hours)
        load_fc[i] = np.rint(mean * hours)
        load_sd[i] = np.rint(spread * hours)
        kwp = 0.0
        if i in pv_homes:
            kwp = round(float(home_rng.uniform(4.0, 12.0)), 1)
            orient = ORIENTATIONS[int(home_rng.integers(len(ORIENTATIONS)))]
            if orient not in pv_cache:
                pv_cache[orient] = data.pv_per_kwp(slots, slot_seconds, options.region, *orient)
            pv[i] = np.rint(pv_cache[orient] * kwp * hours)
            pv_fc[i], pv_sd[i] = data.pv_forecast_error(
                pv[i], slot_seconds, np.random.default_rng([options.seed, i, 7])
            )
        battery = None
        if i in battery_homes:
            cap = int(home_rng.choice([5_000, 7_500, 10_000, 13_500]))
            battery = Battery(cap, max(2_500, cap // 2), 90, cap // 5, 20)
        ev = _ev(home_rng, options.days, per_day, slot_seconds, weekdays) if i in ev_homes else None
        flex = _flex(home_rng, options.days, per_day, slot_seconds) if i in flex_homes else ()
        homes.append(
            Home(f"home{i + 1:03d}", kwp, battery, ev, flex, i in clean_homes, round(annual, 1))
        )

    day_ahead = data.day_ahead_prices(slots, slot_seconds, options.region)
    if options.tariff == "dynamic":
        retail = np.clip(np.rint(options.charges_ct + day_ahead), options.feed_in_ct + 1, 100)
    else:
        retail = np.full(t, options.import_ct)
    community = Community(
        slot_seconds=slot_seconds,
        slots=slots,
        homes=tuple(homes),
        load_wh=load,
        pv_wh=pv,
        import_price=retail.astype(np.int64),
        feed_in=np.full(t, options.feed_in_ct, dtype=np.int64),
        carbon=data.carbon_intensity(slots, slot_seconds, options.region),
        day_ahead=day_ahead,
        meta={
            "source": "seeded",
            "seed": options.seed,
            "region": options.region,
            "station": data.load_weather(options.region).station,
            "start": options.start,
            "tariff": options.tariff,
            "forecast": options.forecast,
        },
    )
    if options.forecast == "noisy":
        community.load_fc_wh, community.load_sd_wh = load_fc, load_sd
        community.pv_fc_wh, community.pv_sd_wh = pv_fc, pv_sd
    community.check()
    return community
