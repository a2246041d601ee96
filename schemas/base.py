"""The base every schema inherits: unknown fields are refused, nested schemas included."""

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, pre_load


class StrictSchema(Schema):
    """A schema that rejects unknown fields (marshmallow does not propagate ``unknown``)."""

    class Meta:
        unknown = RAISE

    @pre_load
    def refuse_nul_characters(self, data: Any, **kwargs: Any) -> Any:
        """Refuse NUL characters anywhere: no store keeps them, and PostgreSQL errors on them."""
        if hasattr(data, "items"):
            bad = [key for key, value in data.items() if isinstance(value, str) and "\x00" in value]
            if bad:
                raise ValidationError({key: ["Must not contain NUL characters."] for key in bad})
        return data
