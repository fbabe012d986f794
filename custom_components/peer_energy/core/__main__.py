"""``python -m custom_components.peer_energy.core``: see :mod:`.cli`."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
