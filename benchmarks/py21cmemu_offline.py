"""Does the field's emulator, py21cmemu (21cmEMU; Breitman et al. 2024), install beside the pinned
stack and run without downloading anything? What does it emulate, and how fast?

    pip install --dry-run -c constraints.txt py21cmemu          # what it would add to .venv
    pip install --target /tmp/emu/site --no-deps py21cmemu appdirs einops toml
    PYTHONPATH=/tmp/emu/site unshare -rn .venv/bin/python benchmarks/py21cmemu_offline.py

``unshare -rn`` runs it in a network namespace with no network: a download would fail. Not a
project dependency (docs/observations.md says why): its parameters are not this project's three.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

torch.set_num_threads(1)
t0 = time.perf_counter()
from py21cmemu import Emulator  # noqa: E402

emu = Emulator(emulator="acg")  # the bundled atomic-cooling-galaxy model
t1 = time.perf_counter()
keys = list(emu.inputs.astro_param_keys)
theta = dict(zip(keys, [-1.3, 0.5, -1.0, -0.5, 8.7, 0.5, 40.5, 500.0, 1.0], strict=True))
emu.predict(theta)  # warm-up
n = 100
t2 = time.perf_counter()
for _ in range(n):
    _, out, _ = emu.predict(theta)
t3 = time.perf_counter()
print(
    json.dumps(
        {
            "parameters": keys,
            "load_s": round(t1 - t0, 3),
            "predict_s": round((t3 - t2) / n, 4),
            "ps_shape (z, k)": list(np.shape(out.PS)),
            "k_range_1/Mpc": [float(np.min(np.asarray(out.k))), float(np.max(np.asarray(out.k)))],
            "z_range": [float(np.min(out.PS_redshifts)), float(np.max(out.PS_redshifts))],
        }
    )
)
