"""Domain errors of the pure core; the service maps them to gRPC status codes."""

from __future__ import annotations


class InvalidRequest(ValueError):
    """A request field is missing, malformed or inconsistent (gRPC INVALID_ARGUMENT).

    Attributes:
        field: The name of the offending request field, e.g. "user_id".
        message: The human-readable explanation; it always names the field.
    """

    def __init__(self, field: str, message: str = "") -> None:
        """Builds the error for `field`; the message is prefixed with the field when it lacks it."""
        text = message or "is invalid"
        if field not in text:
            text = f"{field}: {text}"
        super().__init__(text)
        self.field = field
        self.message = text

    def __reduce__(self) -> tuple[type[InvalidRequest], tuple[str, str]]:
        """Pickles with (field, message) so the error survives Ray's process boundaries."""
        return (type(self), (self.field, self.message))
