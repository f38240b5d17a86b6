"""The one exception type for mistakes a user can fix, and the exit status it ends in."""

# What every command line of the project returns after a one-line error.
EXIT_USER_ERROR = 2


class BrainPropError(Exception):
    """A problem caused by the user's input (arguments, files, data).

    The CLI prints its message as a single line and exits non-zero, so the
    message must say what is wrong and what to do about it.
    """
