"""The base every schema inherits: unknown fields are refused, nested schemas included."""

from marshmallow import RAISE, Schema


class StrictSchema(Schema):
    """A schema that rejects unknown fields (marshmallow does not propagate ``unknown``)."""

    class Meta:
        unknown = RAISE
