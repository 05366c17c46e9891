"""One party set of bench/fate2_scale.py: examples/fate2/train.py (stock or the plugin, CoordinatedLR
or HeteroSecureBoost, FATE's multiprocess launcher) with every PHE call profiled
(bench/fate2_profile.py). Same arguments as train.py; the data must already be in --data-dir."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "fate2"))
sys.path.insert(0, str(ROOT))

import train  # noqa: E402 - installs the plugin at import when --plugin heaccel (the one-line change)

from accel.bench import fate2_profile  # noqa: E402

fate2_profile.instrument()  # top level: FATE's spawned computing workers run it too


def run(ctx) -> None:
    # inherited by the computing workers this party starts from here on
    os.environ[fate2_profile.ENV_ROLE] = "arbiter" if ctx.is_on_arbiter else "guest" if ctx.is_on_guest else "host"
    fate2_profile.instrument()
    train.run(ctx)


if __name__ == "__main__":
    from fate.arch.launchers.multiprocess_launcher import launch

    launch(run)
