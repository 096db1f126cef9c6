"""The sign-up form and its confirmation link: double opt-in, no way to bomb strangers.

* ``GET /subscribe``: the form (email, optional name, the consent text, a hidden honeypot and
  a signed timestamp; :mod:`mailer.web.abuse`).
* ``POST /subscribe``: always the same "check your inbox" page, whatever the address's state,
  so the form never tells who is subscribed. A person's sign-up is recorded with its
  confirmation email in the outbox (:func:`mailer.store.signups.record_signup`, which also
  applies the rate limits); a bot's is not; a form without a stamp (embedded on another
  site) gets the filled-in form again, to press Subscribe once more.
* ``GET /confirm/<token>`` (and HEAD) shows a Confirm button and changes nothing (link
  scanners open every link); ``POST`` confirms and answers with the welcome page.

No text typed into the form goes into any email: the confirmation email is the newsletter's
own words and the link (mailer.send.outbox builds it).
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from mailer.errors import InvalidAddress, TokenError
from mailer.store.addresses import normalise_address
from mailer.store.signup_links import confirm_signup, signup_view
from mailer.store.signups import Outcome, SignupRequest, clean_name
from mailer.tokens import (
    MAX_STAMP_SOURCE,
    FormStamp,
    make_form_stamp,
    read_signup_token,
    signup_lookup_hash,
)
from mailer.web.abuse import Verdict, judge
from mailer.web.client_ip import client_ip, parse_networks
from mailer.web.context import WebContext
from mailer.web.forms import small_form
from mailer.web.masking import mask_address
from mailer.web.pages import PRIVATE
from mailer.web.security import page_policy

log = logging.getLogger("mailer.signup")
FORM_PATH = "/subscribe"
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
_MAX_SHOWN = 320  # characters of a typed address shown back on the page


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class SignupEndpoints:
    def __init__(self, web: WebContext) -> None:
        self.web = web
        config = web.config
        self.trusted = parse_networks(config.trusted_proxies)
        self._told_proxies = False
        self.own_origin = _origin(config.base_url)
        # The form's pages may be framed by the sites the operator lists, and by no other.
        ancestors = " ".join(o.strip() for o in config.signup_frame_ancestors.split(",") if o)
        framing = {}
        if ancestors:
            framing = {"Content-Security-Policy": page_policy(web.pages.css, ancestors)}
        self.form_headers = {"Cache-Control": "no-store", **framing}  # a stamp: never cached
        self.answer_headers = {**PRIVATE, **framing}

    def routes(self) -> list[Route]:
        return [
            Route(FORM_PATH, self.subscribe, methods=["GET", "POST"]),
            Route("/confirm/{token}", self.confirm, methods=["GET", "POST"]),
        ]

    # --- the form ---

    def _stamp(self, kind: str, source: str) -> str:
        stamp = FormStamp(int(time.time()), kind, self.web.consent_hash, source)
        return make_form_stamp(self.web.keys, stamp)

    def _form(
        self,
        view: str,
        *,
        source: str = FORM_PATH,
        email: str = "",
        name: str = "",
        error: str = "",
        status_code: int = 200,
    ) -> HTMLResponse:
        kind = "form" if view == "form" and not email else "again"
        return self.web.pages.render(
            "subscribe.html.j2",
            status_code,
            self.form_headers if view == "form" else self.answer_headers,
            view=view,
            email=email[:_MAX_SHOWN],
            name=name[:200],
            error=error,
            stamp=self._stamp(kind, source),
            consent_text=self.web.config.consent_text,
        )

    def _sent(self, email: str) -> HTMLResponse:
        """The one answer to every sign-up, whoever sent it and whatever the address."""
        return self.web.pages.render(
            "subscribe.html.j2",
            200,
            self.answer_headers,
            view="sent",
            email=email[:_MAX_SHOWN],
            name="",
            error="",
            stamp="",
            consent_text="",
            days=self.web.config.signup_link_days,
        )

    async def subscribe(self, request: Request) -> Response:
        if request.method != "POST":
            return self._form("form")
        form = await small_form(request)
        if form is None:
            return self.web.pages.error(413, "Request too large", "Nothing was changed.")
        email, name = form.get("email", "").strip(), form.get("name", "")
        judgement = judge(form, self.web.keys, int(time.time()), self.web.consent_hash)
        stamp = judgement.stamp
        source = stamp.source if stamp else self._embedding_site(request)
        # The address is checked first, for bots too: the answer must not tell a bot
        # whether it was taken for one.
        try:
            address = normalise_address(email)
        except InvalidAddress:
            error = "Please check the address: it does not look like an email address."
            return self._form("again", source=source, email=email, name=name, error=error,
                              status_code=400)  # fmt: skip
        if judgement.verdict == Verdict.BOT:
            log.info("sign-up not mailed: %s", judgement.reason)
            return self._sent(address.email)
        if judgement.verdict == Verdict.AGAIN:
            return self._form("again", source=source, email=address.email, name=name)
        assert stamp is not None
        signup = SignupRequest(
            email=address.email,
            key=address.key,
            name=clean_name(name),
            form=source,
            ip=self._client(request),
            consent_sha256=self.web.consent_hash,  # judge() checked the stamp's is it
        )
        await self._record(signup)
        return self._sent(address.email)

    async def _record(self, signup: SignupRequest) -> None:
        recorded = await self.web.signups.submit(signup)
        if recorded.outcome == Outcome.QUEUED:
            self.web.wake_outbox()
        elif recorded.cap_reached_now:
            log.warning(
                "sign-ups: %d confirmation emails this hour reached signup_emails_per_hour; "
                "further sign-ups are kept without an email (`mailer signups resend` mails "
                "them)",
                self.web.signup_limits.per_hour,
            )
        else:
            log.info("sign-up not mailed: %s", recorded.outcome)

    def _client(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        forwarded = request.headers.getlist("x-forwarded-for")
        if forwarded and not self.trusted and not self._told_proxies:
            # Behind a proxy without trusted_proxies every client is the proxy: the
            # per-client limit would count them all as one. Say so once.
            self._told_proxies = True
            log.warning(
                "sign-ups arrive with X-Forwarded-For but trusted_proxies is not set: the "
                "client address is the socket peer (%s) for every sign-up",
                peer,
            )
        return client_ip(peer, forwarded, self.trusted)

    def _embedding_site(self, request: Request) -> str:
        """Where a form without a stamp was: the origin of the site that embedded it."""
        origin = request.headers.get("origin", "")
        if not _ORIGIN.match(origin):
            referer = request.headers.get("referer", "")
            origin = _origin(referer) if referer.startswith(("http://", "https://")) else ""
        origin = origin.lower()
        if not _ORIGIN.match(origin):
            return "an embedded form (origin unknown)"
        return FORM_PATH if origin == self.own_origin else origin[:MAX_STAMP_SOURCE]

    # --- the link ---

    def _token_hash(self, token: str) -> str | None:
        try:
            return signup_lookup_hash(read_signup_token(self.web.keys, token))
        except TokenError:  # malformed or forged: the one 404, no query
            return None

    async def confirm(self, request: Request) -> Response:
        web = self.web
        token_hash = self._token_hash(request.path_params["token"])
        if token_hash is None:
            return web.not_found()
        if request.method == "POST":
            form = await small_form(request)
            if form is None:
                return web.pages.error(413, "Request too large", "Nothing was changed.")
            done = await web.in_thread(confirm_signup, web.store, token_hash, form.get("name"))
            return web.not_found() if done is None else self._welcome(done.email)
        view = await web.in_thread(signup_view, web.store, token_hash)
        if view is None:
            return web.not_found()
        if view.confirmed:
            return self._welcome(view.email)
        return web.pages.render(
            "confirm.html.j2",
            200,
            PRIVATE,
            view="confirm",
            masked=mask_address(view.email),
            name=view.name,
            consent_text=view.consent_text,
        )

    def _welcome(self, email: str) -> HTMLResponse:
        return self.web.pages.render(
            "confirm.html.j2",
            200,
            PRIVATE,
            view="welcome",
            masked=mask_address(email),
            name="",
            consent_text="",
        )
