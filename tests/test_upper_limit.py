"""The one-sided band-power likelihood equals 21CMMC's own, on HERA's published H1C IDR3 limits
read from the installed package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from astrops.reference.upper_limit import upper_limit_lnl


def _hera():
    import py21cmmc

    path = Path(py21cmmc.__file__).parent / "data" / "HERA_H1C_IDR3.npz"
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _key(data: dict, stem: str, z: float) -> np.ndarray:
    return data.get(f"{stem}{np.round(z, 1)}", data.get(f"{stem}{int(np.round(z))}"))


@pytest.mark.parametrize("with_emulator_error", [False, True])
def test_it_is_21cmmcs_upper_limit_likelihood(with_emulator_error):
    from py21cmmc.likelihood import Likelihood1DPowerLightconeUpper

    data = _hera()
    zs = data["z_bands"]
    lk = object.__new__(Likelihood1DPowerLightconeUpper)  # computeLikelihood needs only these
    lk.data, lk.redshifts = [data], zs
    kwf = [_key(data, "kwfband", z) for z in zs]
    k_len = max(len(k) for k in kwf)
    rng = np.random.default_rng(0)
    # model spectra from far below to far above the limits (mK²), on each band's window k-values
    scale = np.array([1.0, 30.0, 300.0, 3000.0, 30000.0])[:, None, None]
    model = scale * rng.uniform(0.5, 1.5, (5, len(zs), k_len))
    err = 0.1 * model[2]
    ctx = {"delta": model, **({"delta_err": err} if with_emulator_error else {})}
    expected = lk.computeLikelihood([ctx])
    ours = np.zeros(len(model))
    for i, z in enumerate(zs):
        n = len(kwf[i])
        ours += upper_limit_lnl(
            model[:, i, :n],
            _key(data, "band", z),
            _key(data, "wfband", z),
            emulator_error=err[i, :n] if with_emulator_error else None,
        )
    assert np.ptp(expected) > 10  # the limits bite for the largest spectra
    assert ours == pytest.approx(expected, rel=0, abs=1e-10)
