"""Peer Energy demo: a real Home Assistant with a simulated home, set up as a user would.

Run through ``./scripts/demo`` (which bootstraps ``.venv`` first). The script

1. creates a throw-away config directory under ``.demo/`` (git-ignored),
2. writes ``configuration.yaml`` (loopback HTTP on a free port, a handful of core
   integrations, and template/input entities that simulate a PV inverter, a battery, an EV
   charger, two smart plugs, a grid meter, a price and a carbon-intensity sensor whose values
   move over the day) and ``.storage/http`` (so even recovery mode stays on 127.0.0.1),
3. links the repository's ``custom_components/peer_energy`` into it and starts ``hass -c``,
4. onboards over REST (creates a user with a random password), removes the integrations that
   onboarding adds, configures Peer Energy through the REST config flow and adds every asset
   through the REST subentry flow,
5. checks over the websocket API that the Peer Energy devices exist and show live values,
6. prints the URL and login and runs until Ctrl-C (or, with ``--check``, prints a summary and
   exits 0 when everything is in place, 1 otherwise), then stops Home Assistant with SIGTERM
   and removes the config directory (unless ``--keep``).

All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_demo.hassconfig import write_config
from peer_demo.neighbourhood import main
from peer_demo.normal_ha import (
    dashboard_config,
    demo_automation,
    energy_preferences,
)

__all__ = ["dashboard_config", "demo_automation", "energy_preferences", "main", "write_config"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
