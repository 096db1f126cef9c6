"""The preferences link in every issue's footer: change the name, or unsubscribe.

GET shows and changes nothing (link scanners); POST saves the name. The page's Unsubscribe
button posts to the subscriber's unsubscribe link for the same issue, so leaving from here
is the same recorded, undoable unsubscribe as from the link itself.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailer.errors import TokenError
from mailer.store.models import SubscriberStatus
from mailer.store.preferences import Profile, profile, rename
from mailer.tokens import TokenClaims, make_token, read_preferences_token
from mailer.web.context import WebContext
from mailer.web.forms import small_form
from mailer.web.masking import mask_address
from mailer.web.pages import PRIVATE

# Who may press Unsubscribe here (as on the unsubscribe page: a bounced address may leave).
_CAN_LEAVE = frozenset({SubscriberStatus.ACTIVE, SubscriberStatus.BOUNCED})


class PreferenceEndpoints:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def routes(self) -> list[Route]:
        return [Route("/preferences/{token}", self.preferences, methods=["GET", "POST"])]

    def _claims(self, token: str) -> TokenClaims | None:
        try:
            return read_preferences_token(self.web.keys, token)
        except TokenError:
            return None

    async def preferences(self, request: Request) -> Response:
        web = self.web
        claims = self._claims(request.path_params["token"])
        if claims is None:
            return web.not_found()
        uid = claims.subscriber_uid
        if request.method == "POST":
            form = await small_form(request)
            if form is None:
                return web.pages.error(413, "Request too large", "Nothing was changed.")
            found = await web.in_thread(rename, web.store, uid, form.get("name", ""))
            view = "saved"
        else:
            found = await web.in_thread(profile, web.store, uid)
            view = "show"
        if found is None:
            return web.not_found()
        return self._page(view, found, claims)

    def _page(self, view: str, found: Profile, claims: TokenClaims) -> Response:
        unsubscribe = make_token(self.web.keys, claims.subscriber_uid, claims.issue_number)
        return self.web.pages.render(
            "preferences.html.j2",
            200,
            PRIVATE,
            view=view,
            masked=mask_address(found.email),
            name=found.name,
            subscribed=found.status == SubscriberStatus.ACTIVE,
            can_leave=found.status in _CAN_LEAVE,
            unsubscribe_token=unsubscribe,
        )
