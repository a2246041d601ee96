"""The base every schema inherits: unknown fields are refused, nested schemas included."""

from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate


def _unstorable(text: str) -> bool:
    """NUL (no store keeps it; PostgreSQL errors on it), or a lone surrogate (JSON's "\\ud800"
    escape parses, but it is no character: it cannot be encoded, encrypted or stored)."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unstorable_paths(value: Any, path: str) -> list[str]:
    """Return where unstorable text hides in ``value`` (strings, keys, lists, objects)."""
    if isinstance(value, str):
        return [path] if _unstorable(value) else []
    found: list[str] = []
    if hasattr(value, "items"):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _unstorable(key):
                found.append(where)
            found.extend(_unstorable_paths(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_unstorable_paths(item, f"{path}.{index}" if path else str(index)))
    return found


class StrictSchema(Schema):
    """A schema that rejects unknown fields (marshmallow does not propagate ``unknown``)."""

    class Meta:
        unknown = RAISE

    # Rules between fields (exactly one of, this one only with that one...) for the OpenAPI
    # document, as JSON Schema keywords; the schema's own validators enforce them.
    openapi_rules: ClassVar[dict[str, Any]] = {}

    @pre_load
    def refuse_unstorable_text(self, data: Any, **kwargs: Any) -> Any:
        """Refuse NUL characters and lone surrogates anywhere, keys included."""
        bad = _unstorable_paths(data, "")
        if bad:
            message = "Must not contain NUL characters or unpaired surrogates."
            # Named as written (a lone surrogate in a key would be unstorable in turn).
            named = (where.encode("utf-8", "backslashreplace").decode() for where in bad)
            raise ValidationError({where: [message] for where in named})
        return data


EXACTLY_ONE_PROPERTY: dict[str, Any] = {"minProperties": 1, "maxProperties": 1}
AT_LEAST_ONE_PROPERTY: dict[str, Any] = {"minProperties": 1}


def only(*names: str, **constants: Any) -> dict[str, Any]:
    """JSON Schema for an object with exactly the fields ``names`` (and ``constants``' values)."""
    rule: dict[str, Any] = {"required": [*constants, *names]}
    rule["maxProperties"] = len(rule["required"])
    if constants:
        rule["properties"] = {name: {"const": value} for name, value in constants.items()}
    return rule


# Fields the server sets; a client sending one gets a 400 naming it, not a silent drop.
SERVER_OWNED = ("id", "issuing_agency", "status", "version", "created_at", "updated_at")


class InputSchema(StrictSchema):
    """A request body: strict, and clear about fields only the server may set."""

    @pre_load
    def refuse_server_owned_fields(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict):
            sent = [name for name in SERVER_OWNED if name in data]
            if sent:
                raise ValidationError(
                    {name: ["Set by the server; do not send it."] for name in sent}
                )
        return data


def text(max_length: int, *, required: bool = False, **kwargs: Any) -> fields.String:
    """A free-text field: not blank, at most ``max_length`` characters."""
    return fields.String(
        required=required,
        validate=validate.Length(min=1, max=max_length),
        **kwargs,
    )
