"""Errors a user can cause. The CLIs print the message (one sentence naming the fix) and exit 2."""


class MixemError(Exception):
    """A problem with the user's input: bad flag, bad config, missing data, corrupt results."""


class DataNotFoundError(MixemError):
    """The dataset's files are not where the loader looks, and they cannot be downloaded."""


class NonFiniteLossError(MixemError):
    """Training diverged: the loss became NaN or infinite. Retrying from the last checkpoint repeats it."""
