"""The one exception tree of `pbx/`.

Errors say whose fault it was: `AmiLocalError` means obzvon built something Asterisk must never
see (a bad action); `AmiRemoteError` means Asterisk said no or said something unusable; the
connection errors mean the link itself failed. panoramisk's and asyncio's exceptions never leave
`pbx/`: they are translated into these at the boundary.
"""

from __future__ import annotations


class PbxError(Exception):
    """Base of every error raised by `pbx/`."""


class AmiLocalError(PbxError, ValueError):
    """obzvon asked for something invalid (e.g. a header value containing a line break)."""


class AmiRemoteError(PbxError):
    """Asterisk answered an action with an error, or sent a frame that cannot be used."""

    def __init__(self, message: str, *, action: str = "", response: str = "") -> None:
        super().__init__(message)
        self.action = action
        self.response = response


class AmiConnectionError(PbxError):
    """The AMI link could not be established or was lost."""


class AmiAuthenticationError(AmiConnectionError):
    """Asterisk refused the login: wrong user or secret. Retrying will not help."""


class AmiDisconnected(AmiConnectionError):
    """The link went down while an action was in flight; its outcome is unknown."""


class AmiTimeout(PbxError, TimeoutError):
    """An action got no answer within its timeout."""
