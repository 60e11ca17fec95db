"""The membership plugin."""


class MembershipPlugin:
    """Not implemented yet."""
