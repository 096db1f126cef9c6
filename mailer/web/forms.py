"""Reading a POST's small form: what a one-click POST or the page's button sends."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from email.message import Message
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.formparsers import MultiPartParser
from starlette.requests import Request

MAX_BODY = 64 * 1024  # a one-click body is 26 bytes; anything huge is not a mail provider


async def small_form(request: Request) -> dict[str, str] | None:
    """The POST body's text fields, read up to MAX_BODY (None when larger).

    A body that is not a form, or a malformed one, gives no fields: it is still a POST to a
    valid link, which is what unsubscribes.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    kind = _content_type(request.headers)
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if kind == "multipart/form-data":

        async def one_chunk() -> AsyncGenerator[bytes, None]:
            yield body

        parser = MultiPartParser(request.headers, one_chunk(), max_files=0, max_fields=20)
        try:
            form = await parser.parse()
        except Exception:
            return {}
        return {key: value for key, value in form.multi_items() if isinstance(value, str)}
    return {}


def _content_type(headers: Headers) -> str:
    message = Message()
    message["content-type"] = headers.get("content-type", "")
    return message.get_content_type()
