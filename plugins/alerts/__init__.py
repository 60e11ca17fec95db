"""The alerts plugin."""


class AlertsPlugin:
    """Not implemented yet."""
