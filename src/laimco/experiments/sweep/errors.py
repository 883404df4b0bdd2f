"""The one error every sweep problem raises (laimco sweep exits 2 with its message)."""


class SweepError(ValueError):
    """A sweep that cannot run; the message names the file and every offending key."""
