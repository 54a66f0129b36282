"""The typed errors of xmsearch: permanent ones (bad input, bad checkpoint) are never retried,
transient ones (a service that did not answer) may be."""


class XmsearchError(Exception):
    """Base of every error xmsearch raises on purpose; the message names the problem."""


class PermanentError(XmsearchError):
    """Retrying cannot help: the input or the configuration is wrong."""


class TransientError(XmsearchError):
    """A dependency did not answer; the same call may succeed later."""


def plain(message: str) -> str:
    """A pydantic validation message in the user's words (without pydantic's "Value error, ")."""
    return message.removeprefix("Value error, ")


class InvalidInputError(PermanentError, ValueError):
    """A text, language code or argument that the encoder cannot accept."""


class UnknownLanguageError(InvalidInputError):
    """A language with no adapter in the checkpoint, under the `error` policy, or a malformed code."""


class CheckpointError(PermanentError):
    """A folder or hub id that does not hold a usable ColBERT-XM checkpoint."""


class CheckpointUnavailableError(CheckpointError):
    """The checkpoint is not on disk and the hub cannot be reached (or offline mode is on)."""
