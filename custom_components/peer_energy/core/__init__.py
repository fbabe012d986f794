"""Peer Energy engine: market, agents, forecasting, identity, ledger and protocol.

Pure Python (standard library, PyNaCl and numpy only). Nothing in this package may
import ``homeassistant``; ``tests/test_engine_purity.py`` enforces it.
"""
