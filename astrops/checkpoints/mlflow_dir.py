"""An MLflow Model directory astrops logged, read as data: its ``MLmodel`` is parsed (safe YAML)
and must name astrops' own loader; its ``data`` then goes through the checkpoint loaders."""

from __future__ import annotations

from pathlib import Path

from astrops.errors import InputError

LOADER_MODULE = "astrops.tracking.mlflow_model"


def mlflow_model_data(directory: Path) -> Path:
    """The checkpoint (or ensemble directory) inside an MLflow Model directory astrops logged,
    refusing an MLmodel that names anything else: MLflow's own loader would import whatever module,
    code path or pickle the file names; here the file is only read (YAML, safely) and its ``data``
    then goes through the same allowlisted loader as every checkpoint."""
    import yaml

    try:
        spec = yaml.safe_load((directory / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(
            f"{directory}/MLmodel is not readable YAML ({type(exc).__name__})"
        ) from None
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    if (
        not isinstance(pyfunc, dict)
        or set(flavors) != {"python_function"}
        or pyfunc.get("loader_module") != LOADER_MODULE
        or pyfunc.get("code")
        or "python_model" in pyfunc
    ):
        raise InputError(
            f"{directory} is not an MLflow Model astrops logged (it must name only the "
            f"python_function flavour with loader_module {LOADER_MODULE}, no code paths and no "
            "python_model): refusing to load it"
        )
    data = (directory / str(pyfunc.get("data", ""))).resolve()
    if (
        not str(pyfunc.get("data", ""))
        or directory.resolve() not in data.parents
        or not data.exists()
    ):
        raise InputError(
            f"{directory}/MLmodel: 'data' must name the checkpoint or ensemble directory inside "
            "the model's own data/ folder"
        )
    return data
