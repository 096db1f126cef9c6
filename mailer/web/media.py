"""``/media/NAME``: the issues' published images, from the database (stored when a send
starts), so every `mailer serve` host answers for every issue."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailer.compose.images import CONTENT_TYPES, MEDIA_NAME
from mailer.store.media import media_file
from mailer.web.context import WebContext

# A name is the hash of its bytes: what is served under it never changes.
IMMUTABLE = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
}


class MediaEndpoints:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def routes(self) -> list[Route]:
        return [Route("/media/{name}", self.media, methods=["GET"])]

    async def media(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not MEDIA_NAME.match(name):  # canonical names only: lowercase hex, .jpg or .png
            return self.web.not_found()
        found = await self.web.in_thread(media_file, self.web.store, name)
        if found is None:
            return self.web.not_found()
        _, data = found
        # The type follows the name (checked above), whatever the row says.
        media_type = CONTENT_TYPES[name.rsplit(".", 1)[1]]
        return Response(data, media_type=media_type, headers=IMMUTABLE)
