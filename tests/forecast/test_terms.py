"""Which statistics make the PV and inflexible-load sums, and how the hours are combined."""

from __future__ import annotations

from custom_components.peer_energy.const import AssetKind, PowerSign
from custom_components.peer_energy.coordinator import AssetConfig
from custom_components.peer_energy.forecast_build import StatTerm, combine, statistic_terms
from custom_components.peer_energy.runtime import AssetControls


def asset(sid: str, kind: AssetKind, **sources: str) -> AssetConfig:
    sign = PowerSign.POSITIVE_CHARGE if kind is AssetKind.BATTERY else PowerSign.POSITIVE_DISCHARGE
    return AssetConfig(subentry_id=sid, kind=kind, name=sid, sources=sources, power_sign=sign)


ASSETS = {
    "pv": asset("pv", AssetKind.PV, power_entity="sensor.pv_w", energy_entity="sensor.pv_kwh"),
    "bat": asset("bat", AssetKind.BATTERY, power_entity="sensor.bat_w"),
    "ev": asset("ev", AssetKind.EV_CHARGER, power_entity="sensor.ev_w"),
    "dish": asset("dish", AssetKind.PLUG, power_entity="sensor.dish_w"),
    "lamp": asset("lamp", AssetKind.PLUG, power_entity="sensor.lamp_w"),
    "grid": asset(
        "grid",
        AssetKind.GRID_METER,
        power_entity="sensor.grid_w",
        import_energy_entity="sensor.in_kwh",
        export_energy_entity="sensor.out_kwh",
    ),
}


def controls(sid: str) -> AssetControls:
    return AssetControls(plug_flexible=sid == "dish")


def test_terms_of_a_full_home() -> None:
    pv, load = statistic_terms(ASSETS, controls)
    assert pv == (
        StatTerm(((("sensor.pv_kwh", "change", 1),), (("sensor.pv_w", "mean", 1),)), "pv/pv"),
    )
    assert load[0] == StatTerm(
        (
            (("sensor.in_kwh", "change", 1), ("sensor.out_kwh", "change", -1)),
            (("sensor.grid_w", "mean", 1),),
        ),
        "grid/grid_meter",
    )
    assert load[1] == pv[0]
    # The battery's sensor counts charging as positive: discharge adds to the load.
    assert load[2] == StatTerm(((("sensor.bat_w", "mean", -1),),), "bat/battery")
    assert [t.role for t in load[3:]] == ["ev/ev_charger", "dish/plug"]  # not the lamp
    assert not load[3].required
    assert load[0].statistic_ids == {"sensor.in_kwh", "sensor.out_kwh", "sensor.grid_w"}


def test_without_a_grid_there_is_no_load_model() -> None:
    assets = {k: v for k, v in ASSETS.items() if k != "grid"}
    pv, load = statistic_terms(assets, controls)
    assert len(pv) == 1
    assert load == ()
    _, load = statistic_terms(assets, controls, (["utility:in"], []))
    assert load[0] == StatTerm(((("utility:in", "change", 1),),), "energy_dashboard/grid")
    lone = {"x": asset("x", AssetKind.EV_CHARGER)}
    assert statistic_terms(lone, controls) == ((), ())


def test_combine_uses_the_first_option_with_statistics_and_common_hours() -> None:
    pv, load = statistic_terms(ASSETS, controls)
    series = {
        ("sensor.in_kwh", "change"): {0: 500.0, 3600: 100.0, 7200: 0.0},
        ("sensor.out_kwh", "change"): {0: 0.0, 3600: 50.0, 7200: 900.0},
        ("sensor.grid_w", "mean"): {0: 99999.0},  # not used: the counters come first
        ("sensor.pv_w", "mean"): {0: 0.0, 3600: 300.0, 7200: 1200.0},  # no counter statistics
        ("sensor.bat_w", "mean"): {0: 0.0, 3600: 0.0, 7200: 100.0, 10800: 5.0},
        ("sensor.dish_w", "mean"): {3600: 50.0, 7200: 0.0},
    }
    total, missing = combine(series, load)
    # 3600: 100 - 50 + 300 - 0 - 50; 7200: 0 - 900 + 1200 - 100 - 0; hour 0 lacks the plug.
    assert total == {3600: 300.0, 7200: 200.0}
    assert missing == ("ev/ev_charger",)
    assert combine(series, pv) == ({0: 0.0, 3600: 300.0, 7200: 1200.0}, ())
    del series[("sensor.bat_w", "mean")]
    assert combine(series, load) == ({}, ("bat/battery",))  # required: no sum
    assert combine(series, ()) == ({}, ())
