"""User-facing errors: one line that names the file and the fix, never a traceback."""

from __future__ import annotations


class EdgemakerError(Exception):
    """An error caused by the user's input or environment, shown as one line by the CLI."""


class DataError(EdgemakerError):
    """The data folder cannot be trained on as it is."""


class MissingDependencyError(EdgemakerError):
    """An optional package is needed for the feature that was asked for."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the package '{package}': install it with "
            f"`pip install 'edgemaker[{extra}]'`"
        )
