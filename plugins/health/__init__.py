"""The health plugin."""


class HealthPlugin:
    """Not implemented yet."""
