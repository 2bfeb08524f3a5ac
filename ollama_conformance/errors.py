"""The one exception type every subcommand raises for bad input or an unusable target."""


class UsageError(Exception):
    """Bad input from the user: printed as one clear line, exit status 2, never a traceback."""


class TargetError(Exception):
    """The target could not be used at all (unreachable, refused, garbage): exit status 3."""
