"""Errors a user can fix. The CLI prints their message on one line and exits non-zero."""


class DiceTalkError(Exception):
    """Base class: the message names the problem and, where possible, the fix."""

    exit_code = 2


class InputError(DiceTalkError):
    """A user-supplied file or option is unusable (bad image, audio, emotion, schedule...)."""


class WeightsError(DiceTalkError):
    """A weights folder or checkpoint is missing, malformed or does not match the model."""


class UnsafeFileError(DiceTalkError):
    """A file would need arbitrary code execution (a pickle with globals) to be read."""


class Cancelled(DiceTalkError):
    """The job was stopped on request (a cancelled web-UI job, a shutting-down server); nothing was written."""

    exit_code = 130


class DiskFullError(DiceTalkError):
    """The disk filled while an output was written; the earlier file (if any) is untouched."""

    exit_code = 28  # ENOSPC, so scripts can tell a full disk from bad input
