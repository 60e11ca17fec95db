"""The routing plugin."""


class RoutingPlugin:
    """Not implemented yet."""
