"""The real Home Assistant of the browser tests (shared with ``tests/real/``)."""

from __future__ import annotations

from tests.realhome import HarnessError, RealHome, artifacts_dir, free_port

__all__ = ["HarnessError", "RealHome", "artifacts_dir", "free_port"]
