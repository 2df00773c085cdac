"""The API's one error type: a status, a code and a one-line message (the one error shape)."""

from __future__ import annotations


class WebError(Exception):
    """An error the API reports with its status and code in the one error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
