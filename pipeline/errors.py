"""Errors the CLI turns into one-line messages (no traceback)."""


class PipelineError(Exception):
    """A user-facing failure: bad input, missing file, refused resume, ...

    The message is shown as-is on one line; ``exit_code`` is the process exit status.
    """

    exit_code = 1


class ConfigError(PipelineError):
    """params.yaml is missing, unparsable or invalid (exit code 2, like a usage error)."""

    exit_code = 2
