"""The RFC 9457 problem document, for the OpenAPI description."""

from marshmallow import fields

from schemas.base import StrictSchema


class ProblemSchema(StrictSchema):
    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Field name -> messages, for validation failures"},
    )
    request_id = fields.String()
