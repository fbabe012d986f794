"""``python custom_components/peer_energy/core clear``: the engine's command line (:mod:`.cli`).

Run as a directory, this file loads the engine as a package of its own
(``peer_energy_core``): nothing outside ``core/`` is imported, so the command needs only
Python 3.12 or newer and numpy, not Home Assistant. Run as
``python -m custom_components.peer_energy.core`` it works as well, but Python then imports
the integration's package (and Home Assistant) first.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
import sys


def _engine_main() -> int:
    """``cli.main`` of this engine, loaded as the package ``peer_energy_core``."""
    if __package__:  # python -m custom_components.peer_energy.core
        cli = importlib.import_module(".cli", __package__)
    else:  # python custom_components/peer_energy/core: not inside any package
        here = Path(__file__).resolve().parent
        # The directory itself is on sys.path (as the script's folder); its subfolders
        # must not be importable as top-level modules.
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        spec = importlib.util.spec_from_file_location(
            "peer_energy_core", here / "__init__.py", submodule_search_locations=[str(here)]
        )
        assert spec is not None
        assert spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules["peer_energy_core"] = package
        spec.loader.exec_module(package)
        cli = importlib.import_module("peer_energy_core.cli")
    code: int = cli.main()
    return code


if __name__ == "__main__":
    if sys.version_info < (3, 12):  # noqa: UP036 - run by any python3, which may be older
        sys.exit("the Peer Energy engine needs Python 3.12 or newer")
    raise SystemExit(_engine_main())
