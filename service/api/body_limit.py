"""Request bodies over ``MAX_CONTENT_LENGTH`` are refused with a 413, however they are framed.

Werkzeug checks a ``Content-Length`` against the limit before reading. A chunked body has no
length; when the server terminates the stream (gunicorn and Werkzeug's own server set
``wsgi.input_terminated``), Werkzeug wraps it in a ``LimitedStream`` whose ``readall`` stops at
the limit and returns what it read: a longer body was silently cut there and the rest ignored
(a 5 MB chunked form to the token endpoint issued a token). ``BodyWithinLimit`` looks one byte
past the limit instead, so such a body is a 413 like any other.
"""

from __future__ import annotations

from typing import IO, cast

from flask import Flask, Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream


class BodyWithinLimit(LimitedStream):
    """A terminated input stream, read up to ``limit`` bytes; a longer body raises 413."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)
        self._unread = stream

    def on_exhausted(self) -> None:
        # At the limit: a body of exactly the limit ends here, a longer one has more to read.
        # The stream is terminated by the server, so this read cannot wait for ever.
        if self._unread.read(1):
            raise RequestEntityTooLarge()

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted:  # the parent stops at the limit without looking further
            self.on_exhausted()
        return data


class LimitedRequest(Request):
    """Flask's request, with the body limit enforced on streamed (chunked) bodies too."""

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        if limit is None or self.shallow or "wsgi.input_terminated" not in self.environ:
            # Werkzeug's own rules: a Content-Length over the limit is refused before reading,
            # and a stream the server does not terminate is read as empty.
            return super().stream
        if self.content_length is not None and self.content_length > limit:
            raise RequestEntityTooLarge()
        return cast(IO[bytes], BodyWithinLimit(self.environ["wsgi.input"], limit))


def init_app(app: Flask) -> None:
    """Make ``app`` refuse any request body longer than its ``MAX_CONTENT_LENGTH``."""
    app.request_class = LimitedRequest
