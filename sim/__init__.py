"""Peer Energy community simulator (not shipped with the integration).

Builds a reproducible community from offline data (or a user's scenario files), runs the
real market engine of ``custom_components.peer_energy.core`` slot by slot, compares it with
baselines (no trading, a ramp strategy, the perfect-foresight optimum) and reports KPIs.
Run it with ``./scripts/simulate`` or ``python -m sim``; see ``docs/simulation.md``.
"""
