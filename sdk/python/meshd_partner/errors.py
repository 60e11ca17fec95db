"""What a call to the partner API raises."""

from __future__ import annotations

PROBLEM_PREFIX = "https://meshd.dev/problems/"


class PartnerError(Exception):
    """Base of every error this SDK raises."""


class PartnerAPIError(PartnerError):
    """The API answered with an error (an RFC 9457 problem, or a bare HTTP error from a proxy)."""

    def __init__(self, status: int, type: str, title: str, detail: str | None = None, field: str | None = None,
                 retry_after: float | None = None):
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.field = field
        self.retry_after = retry_after
        text = f"{status} {title}"
        if detail:
            text += f": {detail}"
        if field:
            text += f" (field {field})"
        super().__init__(text)

    @property
    def code(self) -> str:
        """The problem's short name (``not_found``, ``rate_limited``...), or ``http_<status>`` without one."""
        if self.type.startswith(PROBLEM_PREFIX):
            return self.type[len(PROBLEM_PREFIX):]
        return f"http_{self.status}"


class PartnerConnectionError(PartnerError):
    """The API could not be reached (connection refused, timeout, TLS failure), after every retry."""
