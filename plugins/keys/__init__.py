"""The keys plugin."""


class KeysPlugin:
    """Not implemented yet."""
