"""Invariants of the community simulator on a small seeded scenario (6 homes, one day)."""

from __future__ import annotations

from dataclasses import replace
import json
from pathlib import Path
import re

import numpy as np
import pytest

from sim import baselines, gap, kpi, report, run
from sim.__main__ import main, simulate
from sim.community import Community, Options, build
from sim.homes import PriceMemory
from sim.scenario import ScenarioError, read_scenario, write_scenario

OPTIONS = Options(
    seed=7,
    homes=6,
    days=1,
    pv_share=0.5,
    battery_share=0.34,
    ev_share=0.34,
    flex_share=0.5,
    clean_only_share=0.34,
)


@pytest.fixture(scope="module")
def community() -> Community:
    return build(OPTIONS)


@pytest.fixture(scope="module")
def results(community: Community) -> dict[str, object]:
    market, ledger = run.market(community, seed=OPTIONS.seed)
    alone, _ = run.market(community, seed=OPTIONS.seed, trading=False)
    return {
        "no_trade": baselines.no_trade(community),
        "ramp": baselines.ramp(community),
        "alone": alone,
        "market": market,
        "ledger": ledger,
        "optimum": baselines.optimum(community),
    }


def _runs(results: dict[str, object]) -> list[kpi.RunResult]:
    return [r for r in results.values() if isinstance(r, kpi.RunResult)]


def test_same_seed_same_community(community: Community) -> None:
    again = build(OPTIONS)
    assert again.homes == community.homes
    assert np.array_equal(again.load_wh, community.load_wh)
    assert np.array_equal(again.pv_wh, community.pv_wh)
    other = build(Options(**{**OPTIONS.__dict__, "seed": OPTIONS.seed + 1}))
    assert not np.array_equal(other.load_wh, community.load_wh)


def test_community_has_every_device_kind(community: Community) -> None:
    homes = community.homes
    assert any(h.battery for h in homes)
    assert any(h.ev for h in homes)
    assert any(h.flex for h in homes)
    assert any(h.clean_only for h in homes)
    assert community.pv_wh.sum() > 0
    assert community.load_wh.min() > 0
    assert community.n_slots == 96


def test_energy_balance_every_slot(community: Community, results: dict[str, object]) -> None:
    for r in _runs(results):
        errors = r.balance_errors(community)
        assert errors.shape == (community.n_slots,)
        assert errors.max() <= (1e-6 * community.load_wh.sum() if not r.per_home else 0), r.name


def test_trades_balance_between_homes(results: dict[str, object]) -> None:
    market = results["market"]
    assert isinstance(market, kpi.RunResult)
    assert market.bought.sum() > 0, "the market must trade on this scenario"
    assert np.array_equal(market.bought.sum(axis=0), market.sold.sum(axis=0))
    assert np.array_equal(market.paid.sum(axis=0), market.received.sum(axis=0))  # no fee


def test_credit_is_zero_sum_and_matches_payments(
    community: Community, results: dict[str, object]
) -> None:
    market, ledger = results["market"], results["ledger"]
    assert isinstance(market, kpi.RunResult)
    assert ledger.total() == 0  # type: ignore[attr-defined]
    keys = [i.public_key for i in run.identities(community, OPTIONS.seed)]
    for i, key in enumerate(keys):
        expected = int(market.received[i].sum() - market.paid[i].sum())
        assert ledger.balance(key) == expected  # type: ignore[attr-defined]
    assert market.extra["refused_trades"] == 0
    assert market.extra["trades"] == len(ledger.trades)  # type: ignore[attr-defined]


def test_federation_gives_the_same_market(community: Community, results: dict[str, object]) -> None:
    """Through the protocol (every home a peer on the in-memory transport) the market is
    bit-identical to clearing the orders directly."""
    direct, ledger = results["market"], results["ledger"]
    assert isinstance(direct, kpi.RunResult)
    federated, fed_ledger = run.market(community, seed=OPTIONS.seed, federation=True)
    for name in (
        "grid_import",
        "grid_export",
        "bought",
        "sold",
        "paid",
        "received",
        "charge",
        "discharge",
        "ev",
        "flex",
        "clean_bought",
    ):
        assert np.array_equal(getattr(federated, name), getattr(direct, name)), name
    assert fed_ledger.balances == ledger.balances  # type: ignore[attr-defined]


def test_devices_stay_within_limits(community: Community, results: dict[str, object]) -> None:
    bat = baselines.Batteries(community)
    for r in _runs(results):
        if not r.per_home:
            continue
        soc = bat.soc0.copy()
        for t in range(community.n_slots):
            assert (r.charge[:, t] <= bat.pw).all()
            assert (r.discharge[:, t] <= bat.pw).all()
            soc = bat.apply(soc, r.charge[:, t], r.discharge[:, t])
            assert (soc >= bat.reserve).all(), r.name
            assert (soc <= bat.cap).all(), r.name
        assert np.array_equal(soc, r.soc_end)
        for i, home in enumerate(community.homes):
            if home.ev is not None:
                for s in home.ev.sessions:
                    assert r.ev[i, s.arrive : s.depart].sum() == s.energy_wh, r.name
            assert r.flex[i].sum() == sum(task.energy_wh for task in home.flex), r.name
    market = results["market"]
    assert isinstance(market, kpi.RunResult)
    assert market.extra["device_violations"] == 0
    assert market.extra["unfinished_wh"] == 0


@pytest.mark.parametrize("name", ["ramp", "market"])
def test_no_home_worse_off(community: Community, results: dict[str, object], name: str) -> None:
    no_trade = results["no_trade"]
    assert isinstance(no_trade, kpi.RunResult)
    r = results[name]
    assert isinstance(r, kpi.RunResult)
    values = kpi.kpis(community, r, no_trade)
    assert values["homes_worse_off"] == 0, name
    assert (r.bills(community) <= no_trade.bills(community)).all(), name


def test_optimum_at_least_as_good_as_every_run(
    community: Community, results: dict[str, object]
) -> None:
    optimum = results["optimum"]
    assert isinstance(optimum, kpi.RunResult)
    best = optimum.total_bill(community)
    for r in _runs(results):
        assert best <= r.total_bill(community) + 1, r.name  # LP tolerance: 1 milli-cent
    # the objective the solver reports is the same figure
    assert (
        abs(
            optimum.extra["objective_milli"]
            + optimum.soc_start.sum() * int(community.feed_in[-1])
            - best
        )
        < 10
    )


def test_kpi_definitions(community: Community, results: dict[str, object]) -> None:
    no_trade, market, optimum = results["no_trade"], results["market"], results["optimum"]
    assert isinstance(no_trade, kpi.RunResult)
    assert isinstance(market, kpi.RunResult)
    assert isinstance(optimum, kpi.RunResult)
    k = kpi.kpis(community, market, no_trade, optimum)
    base = no_trade.total_bill(community)
    saved = base - market.total_bill(community)
    assert k["savings_eur"] == round(saved / kpi.MILLI_PER_EURO, 2)
    assert k["optimum_savings_share"] == round(saved / (base - optimum.total_bill(community)), 4)
    assert 0 <= k["self_sufficiency"] <= 1
    assert 0 <= k["self_consumption"] <= 1
    assert k["clean_only_market_clean_share"] in (None, 1.0)
    assert k["traded_kwh"] == round(market.sold.sum() / 1000, 1)
    assert sum(k["per_home_savings_eur"].values()) == pytest.approx(k["savings_eur"], abs=0.06)


def test_gini() -> None:
    assert kpi.gini(np.array([])) == 0.0
    assert kpi.gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert kpi.gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)


def test_scenario_round_trip(community: Community, tmp_path: Path) -> None:
    path = write_scenario(community, tmp_path / "community.json")
    back = read_scenario(path)
    assert back.homes == community.homes
    assert back.slot_seconds == community.slot_seconds
    for name in ("slots", "load_wh", "pv_wh", "import_price", "feed_in", "carbon", "day_ahead"):
        assert np.array_equal(getattr(back, name), getattr(community, name)), name
    # and a second round trip writes the same files
    write_scenario(back, tmp_path / "again" / "community.json")
    assert (tmp_path / "again" / "community.timeseries.csv").read_bytes() == (
        tmp_path / "community.timeseries.csv"
    ).read_bytes()


def test_scenario_errors_are_clear(community: Community, tmp_path: Path) -> None:
    path = write_scenario(community, tmp_path / "c.json")
    doc = json.loads(path.read_text())
    with pytest.raises(ScenarioError, match="cannot read"):
        read_scenario(tmp_path / "missing.json")
    bad = dict(doc, slot_minutes=7)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ScenarioError, match="slot_minutes"):
        read_scenario(tmp_path / "bad.json")
    rows = (tmp_path / "c.timeseries.csv").read_text().splitlines()
    (tmp_path / "c.timeseries.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(ScenarioError, match="no row for home"):
        read_scenario(path)
    (tmp_path / "c.timeseries.csv").write_text("\n".join([*rows[:-1], rows[-1] + "x"]) + "\n")
    with pytest.raises(ScenarioError, match="integers"):
        read_scenario(path)
    (tmp_path / "c.timeseries.csv").write_text("\n".join([*rows, rows[-1]]) + "\n")
    with pytest.raises(ScenarioError, match="second row"):
        read_scenario(path)
    (tmp_path / "c.timeseries.csv").write_text("\n".join(rows) + "\n")
    doc["homes"][0]["battery"] = {"capacity_wh": 1000, "power_w": 500, "initial_soc_wh": 5000}
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ScenarioError, match="invalid battery"):
        read_scenario(tmp_path / "bad.json")


def test_report_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = main(
        [
            "--seed",
            "7",
            "--homes",
            "6",
            "--days",
            "1",
            "--battery-share",
            "0.34",
            "--ev-share",
            "0.34",
            "--clean-only-share",
            "0.34",
            "--json",
            str(out_json),
            "--html",
            str(out_html),
        ]
    )
    assert code == 0
    console = capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert set(data["runs"]) == {"no_trade", "ramp", "alone", "market", "optimum"}
    market = data["runs"]["market"]
    assert f"{market['savings_eur']:.2f}" in console
    page = out_html.read_text()
    for chart in ("chart-energy", "chart-prices", "chart-savings", "chart-bills", "home-bills"):
        assert f'id="{chart}"' in page
    assert f"{market['savings_eur']:.2f}" in page
    assert f"{market['self_sufficiency']:.1%}" in page
    assert "<script" not in page
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert data["targets"]
    assert all("met" in t for t in data["targets"])
    targets = {t["target"] for t in data["targets"]}
    assert "community peak import <= the no-trading peak" in targets
    assert "market >= 90 % of the gap between alone but smart and the optimum" in targets
    for home in data["runs"]["market"]["per_home_bill_eur"]:
        assert f"<td>{home}</td>" in page  # the per-home bills table


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--homes", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_report_table_lists_every_run(community: Community, results: dict[str, object]) -> None:
    data, _ = simulate(community, with_baselines=False, seed=OPTIONS.seed, command="x")
    text = report.table(data)
    assert "no trading" in text
    assert "market" in text
    assert "optimum" not in text


def test_dynamic_tariff_follows_day_ahead_prices() -> None:
    """Retail = day-ahead (pricecast) + charges, above the feed-in tariff; invariants hold."""
    c = build(Options(seed=3, homes=4, days=1, battery_share=0.5, tariff="dynamic"))
    assert c.day_ahead is not None
    assert len(set(c.import_price.tolist())) > 3
    assert (c.import_price > c.feed_in).all()
    expected = np.clip(np.rint(22 + c.day_ahead), 9, 100)
    assert np.array_equal(c.import_price, expected)
    no_trade = baselines.no_trade(c)
    market, ledger = run.market(c, seed=3)
    optimum = baselines.optimum(c)
    assert market.balance_errors(c).max() == 0
    assert ledger.total() == 0
    assert optimum.total_bill(c) <= market.total_bill(c) + 1
    assert optimum.total_bill(c) <= no_trade.total_bill(c) + 1


def test_alone_but_smart_does_not_trade(community: Community, results: dict[str, object]) -> None:
    """The same planner without a market: no trades, no ledger entries, every device
    within its limits, and a bill no better than the optimum's."""
    alone = results["alone"]
    assert isinstance(alone, kpi.RunResult)
    assert alone.name == "alone but smart"
    assert alone.bought.sum() == alone.sold.sum() == 0
    assert alone.extra["trades"] == 0
    assert alone.extra["device_violations"] == 0
    optimum = results["optimum"]
    assert isinstance(optimum, kpi.RunResult)
    assert optimum.total_bill(community) <= alone.total_bill(community) + 1


def test_market_closes_the_gap_to_the_optimum(
    community: Community, results: dict[str, object]
) -> None:
    no_trade, alone, market, optimum = (
        results["no_trade"],
        results["alone"],
        results["market"],
        results["optimum"],
    )
    assert isinstance(no_trade, kpi.RunResult)
    assert isinstance(alone, kpi.RunResult)
    assert isinstance(market, kpi.RunResult)
    assert isinstance(optimum, kpi.RunResult)
    k = kpi.kpis(community, market, no_trade, optimum, alone)
    assert k["alone_gap_share"] is not None
    assert k["savings_eur"] > kpi.kpis(community, alone, no_trade, optimum)["savings_eur"]
    assert k["delivered_share"] == 1.0  # exact forecasts: every sale delivered
    assert k["homes_worse_off_than_alone"] == 0
    assert (
        k["peak_grid_import_kw"] <= kpi.kpis(community, no_trade, no_trade)["peak_grid_import_kw"]
    )


def test_advise_mode_devices_follow_their_own_logic(community: Community) -> None:
    """In advise mode the devices do what they would do without the market (the no-trading
    dispatch), and the homes only trade what that gives: every sale is delivered."""
    no_trade = baselines.no_trade(community)
    advise, ledger = run.market(community, seed=OPTIONS.seed, mode="advise")
    for name in ("charge", "discharge", "ev", "flex"):
        assert np.array_equal(getattr(advise, name), getattr(no_trade, name)), name
    assert advise.sold.sum() > 0
    k = kpi.kpis(community, advise, no_trade)
    assert k["delivered_share"] == 1.0
    assert k["homes_worse_off"] == 0
    assert ledger.total() == 0


def test_forecast_error_run_keeps_every_home_whole() -> None:
    """With noisy forecasts the homes plan with what they expect and the meter settles the
    rest: devices stay within limits, nobody is worse off than not trading."""
    c = build(Options(**{**OPTIONS.__dict__, "forecast": "noisy"}))
    assert c.forecast_error
    load_fc, pv_fc, load_sd, _ = c.forecasts()
    assert not np.array_equal(load_fc, c.load_wh)
    assert load_sd.min() >= 0
    no_trade = baselines.no_trade(c)
    market, _ = run.market(c, seed=OPTIONS.seed)
    assert market.balance_errors(c).max() == 0
    assert market.extra["device_violations"] == 0
    assert market.extra["unfinished_wh"] == 0
    k = kpi.kpis(c, market, no_trade)
    assert k["homes_worse_off"] == 0
    assert 0.0 <= k["delivered_share"] <= 1.0


def test_scenario_with_forecasts_and_fractional_negative_prices(
    community: Community, tmp_path: Path
) -> None:
    """Forecast columns and prices with two decimals (also negative) read and write back."""
    c = build(Options(**{**OPTIONS.__dict__, "forecast": "noisy"}))
    path = write_scenario(c, tmp_path / "noisy.json")
    back = read_scenario(path)
    for name in ("load_fc_wh", "pv_fc_wh", "load_sd_wh", "pv_sd_wh"):
        assert np.array_equal(getattr(back, name), getattr(c, name)), name
    prices = (tmp_path / "noisy.prices.csv").read_text().splitlines()
    rows = [prices[0]] + [
        line.replace(",32,8,", ",31.75,-0.5,", 1) if k % 2 else line
        for k, line in enumerate(prices[1:])
    ]
    (tmp_path / "noisy.prices.csv").write_text("\n".join(rows) + "\n")
    odd = read_scenario(path)
    assert odd.price_scale == 100
    assert odd.import_price[1] == 3175
    assert odd.feed_in[1] == -50
    assert odd.import_price[0] == 3200
    write_scenario(odd, tmp_path / "again.json")
    assert ",31.75,-0.50," in (tmp_path / "again.prices.csv").read_text()
    market, _ = run.market(odd, seed=1)
    assert market.balance_errors(odd).max() == 0
    bad = [prices[0], prices[1].replace(",32,", ",31.755,", 1), *prices[2:]]
    (tmp_path / "noisy.prices.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(ScenarioError, match="at most 2 decimals"):
        read_scenario(path)


def test_report_charts_stay_inside_their_axes(
    community: Community, results: dict[str, object]
) -> None:
    """Every bar and line point lies within its chart's plot area; one-day runs get hour
    labels, the start is a readable date, and every run has its own colour in the bill
    chart."""
    data, runs = simulate(community, with_baselines=True, seed=OPTIONS.seed, command="x")
    page = report.html_report(community, data, runs)
    assert "Mon 12 May 2025" in page  # the start, readable
    assert ">03:00<" in page  # hour labels on a one-day run
    assert ">12:00<" in page
    for chart in re.findall(r"<svg id=\"(chart-[a-z]+)\".*?</svg>", page, flags=re.S):
        body = re.search(rf'<svg id="{chart}".*?</svg>', page, flags=re.S)
        assert body is not None
        svg = body.group(0)
        height = float(re.search(r'height="(\d+)"', svg).group(1))  # type: ignore[union-attr]
        top = 34.0
        bottom = height - (58 if chart in ("chart-savings", "chart-bills") else 40)
        bars = r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" [^>]*><title>'
        for y, h in re.findall(bars, svg):
            assert top - 0.6 <= float(y), chart
            assert float(y) + float(h) <= bottom + 0.6, chart
        for path in re.findall(r'<path d="([^"]*)"', svg):
            for y in re.findall(r"[ML][\d.]+ ([\d.]+)", path):
                assert top - 0.6 <= float(y) <= bottom + 0.6, chart
    bills = re.search(r'<svg id="chart-bills".*?</svg>', page, flags=re.S)
    assert bills is not None
    fills = re.findall(
        r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="(#[0-9a-f]+)"',
        bills.group(0),
    )
    assert len(set(fills)) == len(data["runs"])


def test_capacity_shares_add_up_to_the_capacity(community: Community) -> None:
    """Each home's share of the capacity: nothing for homes without a flexible device, and
    the members' own inflexible import plus the shares stay within the capacity."""
    from sim.homes import capacity_shares

    capacity_w = 20_000
    shares = capacity_shares(community, capacity_w)
    assert shares.shape == community.load_wh.shape
    assert shares.min() >= 0
    for i, home in enumerate(community.homes):
        if home.battery is None and home.ev is None and not home.flex:
            assert shares[i].sum() == 0
    load, pv, _, _ = community.forecasts()
    own_w = np.maximum(load - pv, 0).sum(axis=0) * 3600 // community.slot_seconds
    total = own_w + shares.sum(axis=0)
    assert (total <= np.maximum(capacity_w, own_w)).all()
    assert shares.sum() > 0


def test_capacity_keeps_the_peak_within_the_no_trading_peak() -> None:
    """A dynamic tariff's cheap hour pulls every battery and EV onto the grid at once;
    with the community's capacity (the no-trading peak) shared among the homes the market's
    peak stays within it."""
    c = build(
        Options(
            **{
                **OPTIONS.__dict__,
                "tariff": "dynamic",
                "homes": 8,
                "battery_share": 0.6,
                "ev_share": 0.6,
                "start": "2025-12-08",
            }
        )
    )
    no_trade = baselines.no_trade(c)
    peak = int(no_trade.community_import().max())
    uncapped, _ = run.market(c, seed=OPTIONS.seed)
    assert int(uncapped.community_import().max()) > peak  # what the capacity is for
    capacity_w = peak * 3600 // c.slot_seconds
    market, _ = run.market(c, seed=OPTIONS.seed, capacity_w=capacity_w)
    assert int(market.community_import().max()) <= peak
    assert market.extra["unfinished_wh"] == 0


def test_forecast_miss_goes_to_the_battery_only_where_it_saves_grid_energy() -> None:
    """With noisy forecasts and a fixed tariff, a battery never charges from the grid nor
    discharges into the grid to hold the plan's grid exchange: charging while the home
    imports (or discharging while it exports) happens only with a trade in that slot."""
    c = build(Options(**{**OPTIONS.__dict__, "forecast": "noisy"}))
    market, _ = run.market(c, seed=OPTIONS.seed)
    charge_on_import = (market.charge > 0) & (market.grid_import > 0) & (market.bought == 0)
    discharge_on_export = (market.discharge > 0) & (market.grid_export > 0) & (market.sold == 0)
    assert not charge_on_import.any()
    assert not discharge_on_export.any()


def test_homes_with_forecast_error_plan_from_their_readings(community: Community) -> None:
    """As the slot clock does, a home with forecasts also has its readings: the previous
    slot's PV and load start its next hour (the nowcast); with exact forecasts nothing is
    blended in."""
    from custom_components.peer_energy.core.home.slot_plan import nowcast
    from sim.homes import PlannerInputs

    c = build(Options(**{**OPTIONS.__dict__, "forecast": "noisy"}))
    inputs = PlannerInputs(c, 96)
    sec = c.slot_seconds
    load_fc, _, _, _ = c.forecasts()
    moved = 0
    for i in range(c.n_homes):
        for t in (0, 30, 50):
            fc = inputs.forecast(i, t)
            if t == 0:
                assert fc.load_wh[0] == load_fc[i, 0]
                continue
            raw = replace(
                fc,
                load_wh=tuple(int(x) for x in load_fc[i, t : t + fc.slots]),
                pv_wh=tuple(int(x) for x in c.forecasts()[1][i, t : t + fc.slots]),
                pv_sd_wh=tuple(int(x) for x in c.forecasts()[3][i, t : t + fc.slots]),
            )
            reading = nowcast(
                raw,
                int(c.slots[t]) - sec,
                pv_w=int(c.pv_wh[i, t - 1]) * 3600 // sec,
                load_w=int(c.load_wh[i, t - 1]) * 3600 // sec,
            )
            assert fc == reading
            assert fc.load_wh[8:] == raw.load_wh[8:]  # an hour on: the forecast again
            moved += fc.load_wh[0] != raw.load_wh[0]
    assert moved > 0
    exact = PlannerInputs(community, 96)
    assert exact.forecast(0, 30).load_wh == tuple(int(x) for x in community.load_wh[0, 30:126])


def test_price_memory_expects_purchases_at_the_dearest_and_sales_at_the_cheapest() -> None:
    """The community outlook of the simulated homes: the same slot on the last two days that
    cleared, a purchase at the higher place in the band, a sale at the lower; the prior
    where no day has cleared yet."""
    c = build(replace(OPTIONS, days=3))
    memory = PriceMemory(c)
    per_day = memory.per_day
    t = 2 * per_day
    imp, fit = int(c.import_price[t]), int(c.feed_in[t])
    band = fit + (imp - fit) // 2  # halfway through the band
    memory.record(t - 2 * per_day, float(int(c.feed_in[t - 2 * per_day])), True)  # at the floor
    memory.record(t - per_day, None, True)  # no trade, the community imported: the top
    imports, feed_ins = c.import_price[t : t + 2], c.feed_in[t : t + 2]
    buy, sale = memory.expected(t, imports, feed_ins)
    assert (buy[0], sale[0]) == (imp, fit)
    prior = memory.band[t + 1]
    assert (
        buy[1] == sale[1] == round(int(feed_ins[1]) + prior * (int(imports[1]) - int(feed_ins[1])))
    )
    memory.record(t - per_day, float(band), False)  # yesterday at the middle of the band
    buy, sale = memory.expected(t, imports, feed_ins)
    assert sale[0] == fit
    assert abs(buy[0] - band) <= 1


def test_gap_by_device_day_and_hour(
    community: Community, results: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m sim.gap``: fixing a device class to the optimum's own dispatch costs
    nothing, fixing it to the market's costs at least that; the days add up to the
    difference of the grid costs; the hours cover the day."""
    market, optimum = results["market"], results["optimum"]
    assert isinstance(market, kpi.RunResult)
    assert isinstance(optimum, kpi.RunResult)
    own = gap.by_device(community, optimum, optimum)
    assert all(abs(v) < 0.01 for v in own.values()), own
    parts = gap.by_device(community, market, optimum)
    assert set(parts) == {"ev", "plugs", "batteries"}
    assert all(v > -0.01 for v in parts.values()), parts
    days = gap.by_day(community, market, optimum)
    whole = gap.grid_cost(community, market).sum() - gap.grid_cost(community, optimum).sum()
    assert sum(days) == pytest.approx(whole)
    hours = gap.by_hour(community, market, optimum)
    assert [r["hour"] for r in hours] == list(range(24))
    assert sum(r["discharge"] for r in hours) == pytest.approx(market.discharge.sum() / 1000)
    assert gap.main(["--homes", "4", "--days", "1", "--start", "2025-06-16"]) == 0
    out = capsys.readouterr().out
    assert "by device" in out
    assert "batteries" in out
