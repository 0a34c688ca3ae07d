"""The one error type that reaches the CLI's top level."""


class FatalError(Exception):
    """A usage, configuration or environment error: exit status 2."""


class InputError(Exception):
    """A file or archive member that cannot be read as what it claims to be."""
