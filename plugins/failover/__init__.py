"""The failover plugin."""


class FailoverPlugin:
    """Not implemented yet."""
