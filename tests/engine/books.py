"""Hypothesis strategies and checks shared by the engine tests."""

from __future__ import annotations

from hypothesis import strategies as st

from custom_components.peer_energy.core.market.orders import (
    MarketRules,
    Order,
    Pricing,
    Priority,
    Side,
    Step,
)

SLOT = 1_800_000_000 - 1_800_000_000 % 900


@st.composite
def orders(draw: st.DrawFn, max_orders: int = 10, max_steps: int = 3) -> list[Order]:
    """A random list of valid orders for one slot (unique ids, several owners)."""
    n = draw(st.integers(0, max_orders))
    out = []
    for k in range(n):
        side = draw(st.sampled_from([Side.BUY, Side.SELL]))
        steps = draw(
            st.lists(
                st.builds(Step, st.integers(0, 40), st.integers(0, 5000)),
                min_size=1,
                max_size=max_steps,
            )
        )
        buy = side is Side.BUY
        out.append(
            Order(
                order_id=f"o{k:03d}",
                owner=f"m{draw(st.integers(0, 6))}",
                side=side,
                slot_start=SLOT,
                steps=tuple(steps),
                clean=(not buy) and draw(st.booleans()),
                clean_only=buy and draw(st.booleans()),
                priority=draw(st.sampled_from(list(Priority.__members__.values()))),
                preferred_partners=tuple(
                    draw(st.lists(st.sampled_from([f"m{i}" for i in range(7)]), max_size=2))
                ),
            )
        )
    return out


@st.composite
def rules(draw: st.DrawFn, fair: bool = True, grid: bool = True) -> MarketRules:
    """Random market rules with feed-in tariff below import price."""
    fit = draw(st.integers(0, 15))
    imp = draw(st.integers(fit, 45))
    return MarketRules(
        import_price=imp,
        feed_in_tariff=fit,
        distributor_fee=draw(st.integers(0, 4)),
        pricing=draw(st.sampled_from(list(Pricing.__members__.values()))),
        fair_share_bp=draw(st.sampled_from([10_000, 10_000, 5_000, 3_000])) if fair else 10_000,
        grid_available=draw(st.booleans()) if grid else True,
        import_capacity_wh=draw(st.one_of(st.none(), st.integers(0, 8000))) if grid else None,
        export_capacity_wh=draw(st.one_of(st.none(), st.integers(0, 8000))) if grid else None,
    )
