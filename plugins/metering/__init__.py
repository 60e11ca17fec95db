"""The metering plugin."""


class MeteringPlugin:
    """Not implemented yet."""
