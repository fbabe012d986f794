"""Offline input data: weather, PV, household load, EV sessions, prices, carbon intensity.

Everything here is built from data that ships inside installed packages, so a run needs no
network and the same arguments always give the same numbers:

* **Weather**: the German Weather Service's (DWD) test reference years 2010 that demandlib
  ships (15 climate regions, hourly direct and diffuse horizontal irradiance, temperature,
  wind speed). Region 4 (Potsdam) is the default.
* **PV**: pvlib (solar position, Hay-Davies transposition, SAPM cell temperature, PVWatts
  DC and inverter models) on that weather, per kWp for a few roof orientations.
* **Household load**: the BDEW H25 standard load profile (demandlib, 2025 revision, with its
  dynamisation), varied per home (annual energy, time shift, smoothed noise, appliance
  peaks). The legacy ``ElecSlp`` class is not used (it breaks on pandas 3).
* **EV sessions** and **flexible plug tasks**: drawn from the seed (see ``community.py``).
* **Day-ahead prices**: pricecast's shipped German model (fitted on ENTSO-E 2024-25) driven
  by a national load, solar and wind series derived from the same weather and profiles.
* **Carbon intensity proxy**: a linear function of the residual-load share (see
  :func:`carbon_intensity`), in g CO2/kWh.

Arrays are numpy; the slot grid is given as Unix seconds (UTC) of each slot's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
import re
from typing import Any

import numpy as np
from numpy.typing import NDArray
import pandas as pd  # type: ignore[import-untyped]

LOCAL_TZ = "Europe/Berlin"
REFERENCE_YEAR = 2025  # the calendar year the typical-year weather is laid on
DEFAULT_REGION = 4


@dataclass(frozen=True)
class Weather:
    """Hourly weather of one test reference year, on a UTC hour-start index."""

    region: int
    station: str
    latitude: float
    longitude: float
    altitude: float
    frame: pd.DataFrame  # columns ghi, dhi, dni_h (direct horizontal), temp_air, wind_speed


def _weather_path(region: int) -> Path:
    if not 1 <= region <= 15:
        raise ValueError(f"weather region must be 1..15 (DWD TRY regions), got {region}")
    base = resources.files("demandlib") / "vdi" / "resources_weather"
    return Path(str(base / f"TRY2010_{region:02d}_Jahr.dat"))


def _dms(text: str) -> float:
    deg, minutes = text.split("°")
    return int(deg) + int(minutes.rstrip("'")) / 60.0


@lru_cache(maxsize=16)
def load_weather(region: int = DEFAULT_REGION) -> Weather:
    """Read one DWD TRY 2010 file (hourly, hour ending HH in CET) onto a UTC index."""
    path = _weather_path(region)
    lines = path.read_text(encoding="utf-8").splitlines()
    station = lines[1].split(":", 1)[1].split("WMO")[0].strip()
    pos = re.search(r"(\d+°\d+')N.*?(\d+°\d+')O.*?(\d+) Meter", lines[2])
    if pos is None:
        raise ValueError(f"cannot read the station position in {path.name}")
    header = next(i for i, row in enumerate(lines) if row.startswith("***")) - 1
    frame = pd.read_csv(path, sep=r"\s+", skiprows=header, header=0, comment="*", encoding="utf-8")
    # HH is the hour ending at HH:00 CET (UTC+1, no daylight saving): start = HH-2 UTC.
    start = pd.Timestamp(f"{REFERENCE_YEAR}-01-01", tz="UTC") - pd.Timedelta(hours=1)
    index = start + pd.to_timedelta(np.arange(len(frame)), unit="h")
    out = pd.DataFrame(
        {
            "dni_h": frame["B"].to_numpy(float),
            "dhi": frame["D"].to_numpy(float),
            "temp_air": frame["t"].to_numpy(float),
            "wind_speed": frame["WG"].to_numpy(float),
        },
        index=index,
    )
    out["ghi"] = out["dni_h"] + out["dhi"]
    return Weather(
        region, station, _dms(pos.group(1)), _dms(pos.group(2)), float(pos.group(3)), out
    )


@lru_cache(maxsize=64)
def _pv_hourly(region: int, tilt: int, azimuth: int) -> tuple[NDArray[Any], NDArray[Any]]:
    """AC power per kWp (W) at each weather hour's midpoint: (unix seconds, watts)."""
    import pvlib  # type: ignore[import-untyped]  # lazily: slow to import

    w = load_weather(region)
    mid = w.frame.index + pd.Timedelta(minutes=30)
    solpos = pvlib.solarposition.get_solarposition(
        mid, w.latitude, w.longitude, altitude=w.altitude
    )
    zenith = solpos["apparent_zenith"].to_numpy()
    cosz = np.cos(np.radians(zenith))
    dni = np.where(cosz > 0.05, w.frame["dni_h"].to_numpy() / np.maximum(cosz, 0.05), 0.0)
    dni = np.minimum(dni, 1100.0)
    dni_extra = pvlib.irradiance.get_extra_radiation(mid).to_numpy()
    poa = pvlib.irradiance.get_total_irradiance(
        surface_tilt=tilt,
        surface_azimuth=azimuth,
        solar_zenith=zenith,
        solar_azimuth=solpos["azimuth"].to_numpy(),
        dni=dni,
        ghi=w.frame["ghi"].to_numpy(),
        dhi=w.frame["dhi"].to_numpy(),
        dni_extra=dni_extra,
        model="haydavies",
    )
    poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=float))
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    cell = pvlib.temperature.sapm_cell(
        poa_global, w.frame["temp_air"].to_numpy(), w.frame["wind_speed"].to_numpy(), **params
    )
    dc = pvlib.pvsystem.pvwatts_dc(poa_global, cell, pdc0=1000.0, gamma_pdc=-0.004)
    ac = pvlib.inverter.pvwatts(dc, pdc0=1000.0 / 0.96 * 0.96, eta_inv_nom=0.96)
    ac = np.clip(np.nan_to_num(np.asarray(ac, dtype=float)), 0.0, None) * 0.86  # system losses
    seconds = (mid.asi8 // 10**9).astype(np.int64)
    return seconds, ac


def pv_per_kwp(
    slots: NDArray[Any], slot_seconds: int, region: int, tilt: int, azimuth: int
) -> NDArray[Any]:
    """Mean AC power per kWp (W) in each slot, interpolated between hourly midpoints."""
    seconds, ac = _pv_hourly(region, tilt, azimuth)
    year_start = int(pd.Timestamp(f"{REFERENCE_YEAR}-01-01", tz="UTC").timestamp())
    span = 365 * 86_400
    mids = (slots + slot_seconds // 2 - year_start) % span + year_start
    return np.asarray(np.interp(mids, seconds, ac), dtype=float)


@lru_cache(maxsize=8)
def _h25(start: int, slots15: int) -> NDArray[Any]:
    """BDEW H25 household profile in kW for 1 GWh/year on 15-min slots from ``start``."""
    from demandlib.bdew import H25  # type: ignore[import-untyped]

    index = pd.date_range(
        pd.Timestamp(start, unit="s", tz="UTC").tz_convert(LOCAL_TZ),
        periods=slots15,
        freq="15min",
    )
    return np.asarray(H25(index), dtype=float)


def household_profile(slots: NDArray[Any], slot_seconds: int) -> NDArray[Any]:
    """H25 power (W) per slot for a home using 1000 kWh a year (mean over each slot).

    demandlib scales H25 to kW for 1 GWh a year, which is numerically W for 1000 kWh.
    """
    start = int(slots[0]) - int(slots[0]) % 900
    end = int(slots[-1]) + slot_seconds
    n15 = (end - start + 899) // 900
    w_per_mwh = _h25(start, n15)
    # 15-min values are constant over their quarter hour: sample each slot every 60 s
    offsets = np.arange(0, slot_seconds, 60)
    idx = (slots[:, None] + offsets[None, :] - start) // 900
    return np.asarray(w_per_mwh[np.clip(idx, 0, n15 - 1)].mean(axis=1), dtype=float)


def vary_load(
    base_w: NDArray[Any], annual_kwh: float, slot_seconds: int, rng: np.random.Generator
) -> NDArray[Any]:
    """One home's load (W per slot) from the per-1000-kWh profile with per-home variation.

    Time shift up to +-45 min, hour-smoothed multiplicative noise (sd about 30 %), and
    appliance peaks (1.5-3 kW for 15-45 min, about three a day, placed where the profile
    is high); the profile part is scaled so the expected energy matches ``annual_kwh``.
    """
    return household_load(base_w, annual_kwh, slot_seconds, rng)[0]


PEAKS_PER_DAY = 3.0
PEAK_MEAN_W = 2250.0  # mean power of an appliance peak (1.5-3 kW)
PEAK_MEAN_S = 30.5 * 60  # mean duration (15-45 min)


def household_load(
    base_w: NDArray[Any], annual_kwh: float, slot_seconds: int, rng: np.random.Generator
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """:func:`vary_load` with what a good load model of the home would expect: the load (W
    per slot), its expectation and its standard deviation (W), same random draws.

    The expectation is the home's shifted, scaled profile plus the expected appliance-peak
    power of each slot; the spread combines the profile noise (about 31 %) and the chance
    of a peak in the slot. It is the forecast of a model that learned the home's habits,
    not of one that knows the day.
    """
    n = base_w.size
    per_hour = max(1, 3600 // slot_seconds)
    shift_slots = round(int(rng.integers(-3, 4)) * 900 / slot_seconds)
    shaped = np.roll(base_w, shift_slots)
    noise = rng.normal(0.0, 1.0, n)
    smooth = np.convolve(noise, np.ones(per_hour) / per_hour, mode="same") * np.sqrt(per_hour)
    factor = np.exp(0.3 * smooth - 0.045)  # mean 1
    peak_kwh_year = 3.0 * 0.6 * 365
    scale = max(annual_kwh - peak_kwh_year, 0.5 * annual_kwh) / 1000.0
    load = shaped * factor * scale
    days = n * slot_seconds / 86_400
    weights = shaped / shaped.sum()
    for s in rng.choice(n, size=int(rng.poisson(PEAKS_PER_DAY * days)), p=weights):
        duration = int(rng.integers(15, 46)) * 60
        power = float(rng.uniform(1500.0, 3000.0))
        covered = -(-duration // slot_seconds)
        load[s : s + covered] += power * duration / (covered * slot_seconds)
    rate = PEAKS_PER_DAY * days * weights  # expected peaks starting in each slot
    per_peak_w = PEAK_MEAN_W * PEAK_MEAN_S / slot_seconds
    mean = shaped * scale + rate * per_peak_w
    peak_w = PEAK_MEAN_W * min(1.0, PEAK_MEAN_S / slot_seconds)
    sd = np.sqrt(
        (0.31 * shaped * scale) ** 2 + rate * min(1.0, slot_seconds / PEAK_MEAN_S) * peak_w**2
    )
    return (
        np.asarray(np.maximum(load, 50.0), dtype=float),
        np.asarray(np.maximum(mean, 50.0), dtype=float),
        np.asarray(sd, dtype=float),
    )


def pv_forecast_error(
    pv_wh: NDArray[Any], slot_seconds: int, rng: np.random.Generator
) -> tuple[NDArray[Any], NDArray[Any]]:
    """A day-ahead PV forecast of ``pv_wh`` (one home, Wh per slot) and its spread.

    The weather is what happens; the forecast misses it by a factor per day (lognormal,
    sd about 20 %) and by hour-smoothed noise within the day (sd about 15 %), as a
    day-ahead solar forecast for one roof does. The spread is 25 % of the forecast.
    """
    n = pv_wh.size
    per_day = 86_400 // slot_seconds
    per_hour = max(1, 3600 // slot_seconds)
    days = -(-n // per_day)
    daily = np.repeat(rng.lognormal(0.0, 0.2, days), per_day)[:n]
    noise = rng.normal(0.0, 1.0, n)
    smooth = np.convolve(noise, np.ones(per_hour) / per_hour, mode="same") * np.sqrt(per_hour)
    hourly = np.exp(0.15 * smooth - 0.011)
    forecast = np.rint(pv_wh / daily / hourly)
    return forecast.astype(np.int64), np.rint(0.25 * forecast).astype(np.int64)


def national_drivers(slots: NDArray[Any], slot_seconds: int, region: int) -> pd.DataFrame:
    """Hourly German load, solar and wind (MW) for pricecast, from the same weather.

    Load: H25 shape scaled to a 55 GW mean with a flat commercial/industrial base;
    solar: 100 GW of south-facing PV from the same weather; wind: 65 GW of turbines with a
    simple power curve on the station's wind speed lifted to hub height (power law 1/7).
    """
    w = load_weather(region)
    start = int(slots[0]) - int(slots[0]) % 3600
    hours = int((int(slots[-1]) + slot_seconds - start + 3599) // 3600)
    hour_starts = start + 3600 * np.arange(hours)
    prof = household_profile(hour_starts, 3600)
    load = 30_000.0 + 25_000.0 * prof / prof.mean()
    solar = pv_per_kwp(hour_starts, 3600, region, 35, 180) / 1000.0 * 100_000.0
    wind_idx = pd.DatetimeIndex(pd.to_datetime(hour_starts, unit="s", utc=True))
    year_start = int(pd.Timestamp(f"{REFERENCE_YEAR}-01-01", tz="UTC").timestamp())
    rel = (hour_starts - year_start) % (365 * 86_400)
    wx_sec = (w.frame.index.asi8 // 10**9) - year_start
    ws10 = np.interp(rel, wx_sec, w.frame["wind_speed"].to_numpy())
    hub = ws10 * (100.0 / 10.0) ** (1 / 7)
    curve = np.clip((hub - 3.0) / (12.0 - 3.0), 0.0, 1.0) ** 2
    curve = np.where(hub > 25.0, 0.0, curve)
    wind = 65_000.0 * curve * 0.85
    return pd.DataFrame({"load": load, "solar": solar, "wind": wind}, index=wind_idx)


def day_ahead_prices(slots: NDArray[Any], slot_seconds: int, region: int) -> NDArray[Any]:
    """Day-ahead price (euro cents/kWh, float) per slot from pricecast's German model."""
    import pricecast  # type: ignore[import-untyped]

    drivers = national_drivers(slots, slot_seconds, region)
    model = pricecast.load("DE")
    hourly = model.predict(drivers).to_numpy() / 10.0  # EUR/MWh -> ct/kWh
    hour_sec = drivers.index.asi8 // 10**9
    idx = np.clip((slots - hour_sec[0]) // 3600, 0, hourly.size - 1)
    return np.asarray(hourly[idx], dtype=float)


def carbon_intensity(slots: NDArray[Any], slot_seconds: int, region: int) -> NDArray[Any]:
    """Grid carbon intensity proxy (g CO2/kWh) per slot.

    ``80 + 620 x residual share``, where the residual share is ``max(load - solar - wind, 0)
    / load`` of the national drivers: about 700 g/kWh when fossil plants cover everything
    (a lignite/hard-coal/gas mix) and 80 g/kWh (life-cycle of renewables) when renewables
    cover all. A proxy for comparing hours, not an inventory.
    """
    d = national_drivers(slots, slot_seconds, region)
    share = np.clip((d["load"] - d["solar"] - d["wind"]) / d["load"], 0.0, 1.0).to_numpy()
    hourly = 80.0 + 620.0 * share
    hour_sec = d.index.asi8 // 10**9
    idx = np.clip((slots - hour_sec[0]) // 3600, 0, hourly.size - 1)
    return np.asarray(hourly[idx], dtype=float)
