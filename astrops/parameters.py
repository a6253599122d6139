"""The three reionization parameters astrops infers: one home for their names, units and plot
labels.

The names are 21cmFAST's own (they are the store's and ``predictions.csv``'s column names), so they
are never renamed. Code that works on data at hand reads the names from the data (dataset,
checkpoint, metric keys) rather than from here; this module is for what the data do not carry: the
units people read and the LaTeX labels figures show, and the canonical order of known names.
"""

from __future__ import annotations

from collections.abc import Iterable

NAMES: tuple[str, ...] = ("HII_EFF_FACTOR", "ION_Tvir_MIN", "R_BUBBLE_MAX")

UNITS: dict[str, str] = {
    "HII_EFF_FACTOR": "dimensionless",
    "ION_Tvir_MIN": "log10(K)",
    "R_BUBBLE_MAX": "Mpc",
}

LABELS: dict[str, str] = {
    "HII_EFF_FACTOR": r"$\zeta$ (HII_EFF_FACTOR)",
    "ION_Tvir_MIN": r"$\log_{10} T_{\rm vir}$ [K]",
    "R_BUBBLE_MAX": r"$R_{\rm mfp}$ [Mpc]",
}


def ordered(names: Iterable[str]) -> list[str]:
    """Distinct ``names`` in the canonical order (:data:`NAMES`), any others after them
    alphabetically: names collected from a set (e.g. MLflow metric keys) come out in the order
    tables always used."""
    distinct = set(names)
    return [n for n in NAMES if n in distinct] + sorted(distinct - set(NAMES))
