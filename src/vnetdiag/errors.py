"""The exceptions vnetdiag raises, each with the exit status the CLI maps it to.

Every error says what failed, why, and (in ``hint``) what the user can do about
it. Only the CLI turns them into a one-line message and an exit status.
"""

from __future__ import annotations

import errno as _errno


class VnetdiagError(Exception):
    """Base class: a failure the user can act on. Exit status 2 unless overridden."""

    exit_status = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class UsageError(VnetdiagError):
    """Nonsensical options or arguments."""


class BadInputError(VnetdiagError):
    """A file or name given by the user cannot be used (malformed, missing, wrong)."""


class NotFoundError(BadInputError):
    """A namespace, device, lab or guest named by the user does not exist."""


class PrivilegeError(VnetdiagError):
    """The operation needs a privilege this process does not have."""

    exit_status = 3


class MissingFeatureError(VnetdiagError):
    """The running kernel or machine lacks a feature (tracepoint, module, tool)."""

    exit_status = 3


class KernelError(VnetdiagError):
    """A kernel operation failed; keeps the errno so callers can tell causes apart."""

    exit_status = 3

    def __init__(self, message: str, *, errno: int | None = None, hint: str | None = None) -> None:
        if errno is not None:
            name = _errno.errorcode.get(errno, str(errno))
            message = f"{message}: {name}"
        super().__init__(message, hint=hint)
        self.errno = errno


class Interrupted(VnetdiagError):
    """The user pressed Ctrl-C; partial results may have been shown."""

    exit_status = 130
