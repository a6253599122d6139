"""astrops: reionization parameters from the 21-cm power spectrum, tracked in MLflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("astrops")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
