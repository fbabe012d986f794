"""A community's own data as files: the scenario format (JSON + CSV), read and write.

A scenario is a JSON file that describes the homes and their devices and points to CSV files
with the time series (paths relative to the JSON file). It is meant to be filled from
smart-meter exports: one row per home and slot.

``scenario.json``::

    {
      "format": "peer-energy-scenario/1",
      "slot_minutes": 15,
      "start": "2025-05-12T00:00:00+02:00",     # first slot start, ISO 8601 with offset
      "slots": 96,                              # number of slots
      "timeseries_csv": "timeseries.csv",
      "prices_csv": "prices.csv",               # optional, else "tariff" is used
      "tariff": {"import_ct": 32, "feed_in_ct": 8, "carbon_g_per_kwh": 400},
      "homes": [
        {"id": "home001", "pv_kwp": 6.5, "clean_only": false,
         "battery": {"capacity_wh": 10000, "power_w": 5000, "efficiency_pct": 90,
                     "initial_soc_wh": 2000, "reserve_pct": 20},
         "ev": {"charger_w": 11000, "sessions": [
             {"arrive": "2025-05-12T18:00:00+02:00", "depart": "2025-05-13T07:00:00+02:00",
              "energy_wh": 12000}]},
         "flex": [{"earliest": "2025-05-12T08:00:00+02:00",
                   "deadline": "2025-05-12T20:00:00+02:00", "energy_wh": 1500,
                   "power_w": 2000}]}
      ]
    }

``timeseries.csv`` (long format, one row per home and slot, every pair present)::

    timestamp,home,load_wh,pv_wh
    2025-05-12T00:00:00+02:00,home001,112,0

``load_wh`` is the home's inflexible consumption in the slot (without the EV and the
flexible plugs described in the JSON), ``pv_wh`` its PV generation, both non-negative
integer Wh. Optional columns, all four or none: ``load_forecast_wh``, ``pv_forecast_wh``,
``load_sd_wh``, ``pv_sd_wh``: what the home expects and the standard deviations (without
them the homes plan with the actual values). ``prices.csv`` (optional) has
``timestamp,import_ct,feed_in_ct`` and optionally ``carbon_g_per_kwh`` and ``day_ahead_ct``;
prices have up to two decimals and may be negative (with any decimal the community counts
in hundredths of a cent: ``price_scale`` 100). Times may use any offset; they must fall on the
slot grid. Optional fields: ``pv_kwp`` (informative), ``battery``, ``ev``, ``flex``,
``clean_only`` (default false).

:func:`read_scenario` validates everything and raises :class:`ScenarioError` with the file
and the field at fault; :func:`write_scenario` writes a community in this format, and
reading it back gives the same community (the round trip the tests check).
"""

from __future__ import annotations

import csv
from datetime import datetime
from decimal import Decimal, InvalidOperation
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from .community import EV, Battery, Community, EVSession, FlexTask, Home

FORMAT = "peer-energy-scenario/1"
_ZONE = ZoneInfo("Europe/Berlin")  # only the written offsets; any offset reads back


class ScenarioError(ValueError):
    """The scenario files are missing, malformed or inconsistent."""


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, _ZONE).isoformat()


def _ts(text: object, where: str) -> int:
    if not isinstance(text, str):
        raise ScenarioError(f"{where}: expected an ISO 8601 time, got {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ScenarioError(f"{where}: not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise ScenarioError(f"{where}: the time needs a UTC offset: {text!r}")
    return int(moment.timestamp())


def _int(obj: dict[str, Any], key: str, where: str, *, default: int | None = None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{where}: {key} must be an integer, got {value!r}")
    if value < 0:
        raise ScenarioError(f"{where}: {key} must not be negative")
    return int(value)


PRICE_DECIMALS = 2  # prices may have up to two decimals (hundredths of a cent)
FORECAST_COLUMNS = ("load_forecast_wh", "pv_forecast_wh", "load_sd_wh", "pv_sd_wh")


def _price(text: object, where: str) -> Decimal:
    """A price in ct/kWh: an integer or a decimal with up to two places, may be negative."""
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise ScenarioError(f"{where}: a price must be a number, got {text!r}")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ScenarioError(f"{where}: not a price: {text!r}") from None
    if not value.is_finite() or value != value.quantize(Decimal(1).scaleb(-PRICE_DECIMALS)):
        raise ScenarioError(f"{where}: a price has at most {PRICE_DECIMALS} decimals: {text!r}")
    return value


def _price_text(value: int, scale: int) -> str:
    """A price in the community's units as ct/kWh text (integer when the scale is 1)."""
    if scale == 1:
        return str(value)
    return str((Decimal(value) / scale).quantize(Decimal(1).scaleb(-PRICE_DECIMALS)))


def write_scenario(c: Community, path: str | Path) -> Path:
    """Write ``c`` as ``path`` (JSON) plus ``timeseries.csv`` and ``prices.csv`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    ts_name, pr_name = f"{stem}.timeseries.csv", f"{stem}.prices.csv"
    slot_iso = [_iso(int(s)) for s in c.slots]

    def at(index: int) -> str:
        return _iso(int(c.slots[0]) + index * c.slot_seconds)

    homes = []
    for h in c.homes:
        entry: dict[str, Any] = {"id": h.home_id, "pv_kwp": h.pv_kwp, "clean_only": h.clean_only}
        if h.annual_kwh:
            entry["annual_kwh"] = h.annual_kwh
        if h.battery is not None:
            entry["battery"] = h.battery.to_dict()
        if h.ev is not None:
            entry["ev"] = {
                "charger_w": h.ev.charger_w,
                "sessions": [
                    {"arrive": at(s.arrive), "depart": at(s.depart), "energy_wh": s.energy_wh}
                    for s in h.ev.sessions
                ],
            }
        if h.flex:
            entry["flex"] = [
                {
                    "earliest": at(f.earliest),
                    "deadline": at(f.deadline),
                    "energy_wh": f.energy_wh,
                    "power_w": f.power_w,
                }
                for f in h.flex
            ]
        homes.append(entry)
    doc = {
        "format": FORMAT,
        "slot_minutes": c.slot_seconds // 60,
        "start": slot_iso[0],
        "slots": c.n_slots,
        "timeseries_csv": ts_name,
        "prices_csv": pr_name,
        "homes": homes,
        "meta": {k: v for k, v in c.meta.items() if isinstance(v, str | int | float | bool)},
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    with (path.parent / ts_name).open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        extra = c.forecast_error
        w.writerow(["timestamp", "home", "load_wh", "pv_wh", *(FORECAST_COLUMNS if extra else ())])
        load_fc, pv_fc, load_sd, pv_sd = c.forecasts()
        for t, stamp in enumerate(slot_iso):
            for i, h in enumerate(c.homes):
                row: list[object] = [stamp, h.home_id, int(c.load_wh[i, t]), int(c.pv_wh[i, t])]
                if extra:
                    row += [int(load_fc[i, t]), int(pv_fc[i, t]), int(load_sd[i, t])]
                    row.append(int(pv_sd[i, t]))
                w.writerow(row)
    with (path.parent / pr_name).open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        header = ["timestamp", "import_ct", "feed_in_ct", "carbon_g_per_kwh"]
        if c.day_ahead is not None:
            header.append("day_ahead_ct")
        w.writerow(header)
        for t, stamp in enumerate(slot_iso):
            row = [
                stamp,
                _price_text(int(c.import_price[t]), c.price_scale),
                _price_text(int(c.feed_in[t]), c.price_scale),
                repr(float(c.carbon[t])),
            ]
            if c.day_ahead is not None:
                row.append(repr(float(c.day_ahead[t])))
            w.writerow(row)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return list(csv.DictReader(fh))
    except OSError as err:
        raise ScenarioError(f"cannot read {path}: {err.strerror}") from None


def read_scenario(path: str | Path) -> Community:
    """Read and validate a scenario (see the module docstring); raises :class:`ScenarioError`."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ScenarioError(f"cannot read {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ScenarioError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ScenarioError(f"{path}: format must be {FORMAT!r}")
    minutes = _int(doc, "slot_minutes", path.name)
    if minutes < 1 or 1440 % minutes:
        raise ScenarioError(f"{path.name}: slot_minutes must divide a day")
    slot_seconds = minutes * 60
    start = _ts(doc.get("start"), f"{path.name}: start")
    if start % slot_seconds:
        raise ScenarioError(f"{path.name}: start must lie on the {minutes}-minute grid")
    n = _int(doc, "slots", path.name)
    if n < 1:
        raise ScenarioError(f"{path.name}: slots must be at least 1")
    slots = start + slot_seconds * np.arange(n, dtype=np.int64)

    def index(text: object, where: str, *, end: bool = False) -> int:
        ts = _ts(text, where)
        k, rem = divmod(ts - start, slot_seconds)
        if rem or not 0 <= k <= (n if end else n - 1):
            raise ScenarioError(f"{where}: {text} is not a slot boundary within the scenario")
        return int(k)

    raw_homes = doc.get("homes")
    if not isinstance(raw_homes, list) or not raw_homes:
        raise ScenarioError(f"{path.name}: homes must be a non-empty list")
    homes: list[Home] = []
    for k, raw in enumerate(raw_homes):
        where = f"{path.name}: homes[{k}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            raise ScenarioError(f"{where}: each home needs an id")
        where = f"{path.name}: home {raw['id']}"
        battery = None
        if raw.get("battery") is not None:
            b = raw["battery"]
            if not isinstance(b, dict):
                raise ScenarioError(f"{where}: battery must be an object")
            battery = Battery(
                _int(b, "capacity_wh", where),
                _int(b, "power_w", where),
                _int(b, "efficiency_pct", where, default=90),
                _int(b, "initial_soc_wh", where, default=0),
                _int(b, "reserve_pct", where, default=20),
            )
        ev = None
        if raw.get("ev") is not None:
            e = raw["ev"]
            if not isinstance(e, dict) or not isinstance(e.get("sessions", []), list):
                raise ScenarioError(f"{where}: ev must be an object with a sessions list")
            sessions = tuple(
                EVSession(
                    index(s.get("arrive"), f"{where}: ev session {j} arrive"),
                    index(s.get("depart"), f"{where}: ev session {j} depart", end=True),
                    _int(s, "energy_wh", f"{where}: ev session {j}"),
                )
                for j, s in enumerate(e.get("sessions", []))
            )
            ev = EV(_int(e, "charger_w", where), sessions)
        flex = []
        for j, f in enumerate(raw.get("flex", [])):
            w = f"{where}: flex {j}"
            if not isinstance(f, dict):
                raise ScenarioError(f"{w}: must be an object")
            flex.append(
                FlexTask(
                    index(f.get("earliest"), f"{w} earliest"),
                    index(f.get("deadline"), f"{w} deadline", end=True),
                    _int(f, "energy_wh", w),
                    _int(f, "power_w", w),
                )
            )
        pv_kwp = raw.get("pv_kwp", 0.0)
        if not isinstance(pv_kwp, int | float) or isinstance(pv_kwp, bool) or pv_kwp < 0:
            raise ScenarioError(f"{where}: pv_kwp must be a non-negative number")
        clean = raw.get("clean_only", False)
        if not isinstance(clean, bool):
            raise ScenarioError(f"{where}: clean_only must be true or false")
        annual = raw.get("annual_kwh", 0.0)
        homes.append(Home(raw["id"], float(pv_kwp), battery, ev, tuple(flex), clean, float(annual)))
    ids = {h.home_id: i for i, h in enumerate(homes)}
    if len(ids) != len(homes):
        raise ScenarioError(f"{path.name}: home ids must be unique")

    ts_name = doc.get("timeseries_csv")
    if not isinstance(ts_name, str):
        raise ScenarioError(f"{path.name}: timeseries_csv must name a CSV file")
    load = np.full((len(homes), n), -1, dtype=np.int64)
    pv = np.zeros((len(homes), n), dtype=np.int64)
    ts_path = path.parent / ts_name
    rows = _read_csv(ts_path)
    with_forecast = bool(rows) and all(col in rows[0] for col in FORECAST_COLUMNS)
    if rows and not with_forecast and any(col in rows[0] for col in FORECAST_COLUMNS):
        raise ScenarioError(
            f"{ts_path.name}: forecasts need all of {', '.join(FORECAST_COLUMNS)} or none"
        )
    fc = np.zeros((4, len(homes), n), dtype=np.int64)
    for line, row in enumerate(rows, start=2):
        where = f"{ts_path.name} line {line}"
        home = row.get("home")
        if home not in ids:
            raise ScenarioError(f"{where}: unknown home {home!r}")
        t = index(row.get("timestamp"), where)
        names = ("load_wh", "pv_wh", *(FORECAST_COLUMNS if with_forecast else ()))
        try:
            values = [int(row.get(name) or ("" if name == "load_wh" else "0")) for name in names]
        except ValueError:
            raise ScenarioError(f"{where}: {', '.join(names)} must be integers (Wh)") from None
        if any(v < 0 for v in values):
            raise ScenarioError(f"{where}: {', '.join(names)} must not be negative")
        if load[ids[home], t] >= 0:
            raise ScenarioError(f"{where}: a second row for home {home} in this slot")
        load[ids[home], t], pv[ids[home], t] = values[0], values[1]
        if with_forecast:
            fc[:, ids[home], t] = values[2:]
    missing = np.argwhere(load < 0)
    if missing.size:
        i, t = missing[0]
        raise ScenarioError(
            f"{ts_path.name}: no row for home {homes[i].home_id} at {_iso(int(slots[t]))}"
        )

    tariff = doc.get("tariff", {})
    if not isinstance(tariff, dict):
        raise ScenarioError(f"{path.name}: tariff must be an object")
    base_imp = _price(tariff.get("import_ct", 32), f"{path.name}: tariff.import_ct")
    base_fit = _price(tariff.get("feed_in_ct", 8), f"{path.name}: tariff.feed_in_ct")
    imp_d = [base_imp] * n
    fit_d = [base_fit] * n
    carbon = np.full(n, float(tariff.get("carbon_g_per_kwh", 400.0)))
    day_ahead = None
    if doc.get("prices_csv"):
        pr_path = path.parent / str(doc["prices_csv"])
        rows = _read_csv(pr_path)
        seen = np.zeros(n, dtype=bool)
        has_da = bool(rows) and "day_ahead_ct" in rows[0]
        if has_da:
            day_ahead = np.zeros(n)
        for line, row in enumerate(rows, start=2):
            where = f"{pr_path.name} line {line}"
            t = index(row.get("timestamp"), where)
            if row.get("import_ct") is None or row.get("feed_in_ct") is None:
                raise ScenarioError(f"{where}: import_ct and feed_in_ct are needed")
            imp_d[t] = _price(row["import_ct"], f"{where}: import_ct")
            fit_d[t] = _price(row["feed_in_ct"], f"{where}: feed_in_ct")
            try:
                if row.get("carbon_g_per_kwh"):
                    carbon[t] = float(row["carbon_g_per_kwh"])
                if day_ahead is not None:
                    day_ahead[t] = float(row["day_ahead_ct"])
            except (KeyError, ValueError, TypeError):
                raise ScenarioError(
                    f"{where}: carbon_g_per_kwh and day_ahead_ct must be numbers"
                ) from None
            seen[t] = True
        if not seen.all():
            raise ScenarioError(
                f"{pr_path.name}: no prices for {_iso(int(slots[np.argmin(seen)]))}"
            )
    # Whole cents stay in cents; any fraction makes the price unit a hundredth of a cent.
    fractional = any(p != p.to_integral_value() for p in (*imp_d, *fit_d))
    scale = 10**PRICE_DECIMALS if fractional else 1
    imp = np.asarray([int(p * scale) for p in imp_d], dtype=np.int64)
    fit = np.asarray([int(p * scale) for p in fit_d], dtype=np.int64)
    meta = doc.get("meta", {})
    c = Community(
        slot_seconds=slot_seconds,
        slots=slots,
        homes=tuple(homes),
        load_wh=load,
        pv_wh=pv,
        import_price=imp,
        feed_in=fit,
        carbon=carbon,
        day_ahead=day_ahead,
        meta={**(meta if isinstance(meta, dict) else {}), "source": str(path)},
        price_scale=scale,
    )
    if with_forecast:
        c.load_fc_wh, c.pv_fc_wh, c.load_sd_wh, c.pv_sd_wh = fc[0], fc[1], fc[2], fc[3]
    try:
        c.check()
    except ValueError as err:
        raise ScenarioError(f"{path.name}: {err}") from None
    return c
