"""Errors the CLI turns into one-line messages (no traceback), and the one-line forms of
any exception that such messages quote."""


class PipelineError(Exception):
    """A user-facing failure: bad input, missing file, refused resume, ...

    The message is shown as-is on one line; ``exit_code`` is the process exit status.
    """

    exit_code = 1


class ConfigError(PipelineError):
    """params.yaml is missing, unparsable or invalid (exit code 2, like a usage error)."""

    exit_code = 2


class UsageError(PipelineError):
    """A command-line option out of range (exit code 2, like Typer's own usage errors)."""

    exit_code = 2


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def describe(err: BaseException) -> str:
    """``Type: first line of the message`` (the type alone when there is no message)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
