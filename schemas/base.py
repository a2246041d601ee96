"""The base every schema inherits: unknown fields are refused, nested schemas included."""

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, pre_load


def _nul_paths(value: Any, path: str) -> list[str]:
    """Return where NUL characters hide in ``value`` (strings, keys, lists, objects)."""
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    found: list[str] = []
    if hasattr(value, "items"):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                found.append(where)
            found.extend(_nul_paths(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_nul_paths(item, f"{path}.{index}" if path else str(index)))
    return found


class StrictSchema(Schema):
    """A schema that rejects unknown fields (marshmallow does not propagate ``unknown``)."""

    class Meta:
        unknown = RAISE

    @pre_load
    def refuse_nul_characters(self, data: Any, **kwargs: Any) -> Any:
        """Refuse NUL characters anywhere: no store keeps them, and PostgreSQL errors on them."""
        bad = _nul_paths(data, "")
        if bad:
            raise ValidationError({where: ["Must not contain NUL characters."] for where in bad})
        return data
