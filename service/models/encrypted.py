"""Records with personal fields: declared once, sealed on write, opened on read.

A model mixes in ``EncryptedRecord`` and declares each personal field as ``Personal()``; the
plaintext never reaches the database. Each record has its own data key, wrapped by the active
key-encryption key (``key_version``, ``wrapped_key``); every field is sealed with associated data
naming the table, the record id and the field, so a ciphertext copied to another row or column
fails to open. Blind indexes (``blind_indexes``) are recomputed whenever a field they cover is
set, and support exact-match look-ups without decrypting anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from inspect import get_annotations
from typing import Any, ClassVar, Protocol

from sqlalchemy import Integer, LargeBinary, inspect
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from service.crypto import RecordCipher
from service.keys import active_keys


def new_id() -> str:
    """Return a fresh, unguessable record id."""
    return str(uuid.uuid4())


class Sealed(Protocol):
    """Whatever holds sealed columns and opens them: a record (``EncryptedRecord``) or a row
    read without one (``SealedRow``)."""

    def cipher(self) -> RecordCipher: ...


class Personal:
    """A personal field stored only as ciphertext, in the column ``<name>_sealed``."""

    name: str
    column: str

    def __set_name__(self, owner: type, name: str) -> None:
        # A row type takes its model's field (``SealedRow``): under the same name, or the
        # model's field would open the wrong column.
        if getattr(self, "name", name) != name:
            raise TypeError(f"the personal field {self.name!r} cannot be renamed {name!r}")
        self.name = name
        self.column = f"{name}_sealed"

    def __get__(self, record: Sealed | None, owner: type) -> Any:
        if record is None:
            return self
        # Opened values are cached on the instance: a record is opened at most once per field.
        cache = record.__dict__.setdefault("_plaintext", {})
        if self.name not in cache:
            cache[self.name] = record.cipher().open(self.name, getattr(record, self.column))
        return cache[self.name]

    def __set__(self, record: EncryptedRecord, value: str | None) -> None:
        setattr(record, self.column, record.cipher().seal(self.name, value))
        record.__dict__.setdefault("_plaintext", {})[self.name] = value
        record.refresh_indexes(self.name)


def stored_cipher(table: str, record_id: str, key_version: int, wrapped_key: bytes) -> RecordCipher:
    """The cipher of a stored record, its data key unwrapped by the active key ring."""
    provider = active_keys().provider
    return RecordCipher.from_wrapped(provider, table, record_id, key_version, wrapped_key)


# How a blind index is computed: the BlindIndexer method to use, and the fields it covers.
IndexSpec = tuple[Callable[..., bytes], tuple[str, ...]]


class EncryptedRecord:
    """Mixin for models that hold personal data; subclasses declare ``Personal`` fields."""

    __tablename__: Any
    id: Mapped[str]
    # index column -> spec; an index is None while any field it covers is None.
    blind_indexes: ClassVar[dict[str, IndexSpec]] = {}

    @declared_attr
    def key_version(cls) -> Mapped[int]:
        return mapped_column(Integer, index=True)

    @declared_attr
    def wrapped_key(cls) -> Mapped[bytes]:
        return mapped_column(LargeBinary)

    def __init__(self, **fields: Any) -> None:
        # The id must exist before any field is sealed: it is part of the associated data.
        self.id = fields.pop("id", None) or new_id()
        for name, value in fields.items():
            setattr(self, name, value)

    def cipher(self) -> RecordCipher:
        """Return this record's cipher, creating its data key on first use."""
        cipher: RecordCipher | None = self.__dict__.get("_cipher")
        if cipher is None:
            if getattr(self, "wrapped_key", None) is None:
                cipher = RecordCipher.new(active_keys().provider, self.__tablename__, self.id)
                self.key_version, self.wrapped_key = cipher.wrapped
            else:
                cipher = stored_cipher(
                    self.__tablename__, self.id, self.key_version, self.wrapped_key
                )
            self.__dict__["_cipher"] = cipher
        return cipher

    def stored_values(self) -> dict[str, Any]:
        """As ``Base.stored_values``, the record's data key among them (created if need be)."""
        self.cipher()
        values: dict[str, Any] = super().stored_values()  # type: ignore[misc]  # Base's (MRO)
        return values

    def refresh_indexes(self, changed_field: str) -> None:
        """Recompute the blind indexes that cover ``changed_field``."""
        for column, (method, covered) in self.blind_indexes.items():
            if changed_field not in covered:
                continue
            values = [getattr(self, name) for name in covered]
            index = None
            if all(value is not None for value in values):
                index = method(active_keys().indexer, *values)
            setattr(self, column, index)


class SealedRow:
    """A record's stored columns read as a plain row, without an ORM instance: for statements
    that read many records of several kinds at once (a household's record, for the briefing and
    the incident list), where building instances costs more CPU than anything else they do.

    A subclass names its ``model``, annotates the model's columns it reads (the same names; any
    other annotated attribute is named in ``derived``, and set by whoever reads the row), and
    takes the model's ``Personal`` fields it reads (``summary = Incident.summary``): they open on
    first read, as on the record, with the record's own data key. ``stored`` lists the columns
    to select, in the order ``__init__`` takes their values. Nothing is written back.
    """

    model: ClassVar[type[EncryptedRecord]]
    derived: ClassVar[tuple[str, ...]] = ()
    stored: ClassVar[tuple[str, ...]]
    id: str
    key_version: int
    wrapped_key: bytes

    def __init_subclass__(cls) -> None:
        if "model" not in vars(cls):  # a subclass of a row type would read none of its columns
            raise TypeError(f"{cls.__name__} must name the model it reads")
        columns = inspect(cls.model).columns
        annotated = [name for name in get_annotations(cls) if name not in cls.derived]
        unknown = [name for name in annotated if name not in columns]
        if unknown:
            raise TypeError(f"{cls.__name__}: not columns of {cls.model.__name__}: {unknown}")
        plain = [name for name in annotated if name != "id"]
        sealed = [value.column for value in vars(cls).values() if isinstance(value, Personal)]
        cls.stored = ("id", *plain, *sealed, "key_version", "wrapped_key")

    def __init__(self, values: Sequence[Any]) -> None:
        self.__dict__.update(zip(self.stored, values, strict=True))

    @classmethod
    def columns(cls, source: Any) -> tuple[Any, ...]:
        """The columns to select from ``source`` (the model, or an alias of it), in order."""
        return tuple(getattr(source, name) for name in cls.stored)

    def cipher(self) -> RecordCipher:
        cipher: RecordCipher | None = self.__dict__.get("_cipher")
        if cipher is None:
            cipher = stored_cipher(
                self.model.__tablename__, self.id, self.key_version, self.wrapped_key
            )
            self.__dict__["_cipher"] = cipher
        return cipher
