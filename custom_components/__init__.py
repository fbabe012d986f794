"""Custom components package (kept so tests import ours before Home Assistant's testing_config)."""
