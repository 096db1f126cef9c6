"""Security headers on every response, errors included.

Two Content-Security-Policies:

* The app's own pages (unsubscribe, archive index, errors) carry no script, no images and
  one stylesheet inline in ``<style>``, allowed by its SHA-256 hash: nothing else may load,
  forms may only post back here, and no page may be framed (clickjacking of the button).
* An archived issue is the email's web version: premailer moved its CSS into ``style``
  attributes, MJML adds ``<style>`` blocks (media queries) and maybe a web-font stylesheet,
  and images are absolute https URLs. Hashing every attribute is impractical, so that route
  alone allows inline styles and https images and fonts. That is safe because the page holds
  nothing worth stealing (no subscriber data, no token) and scripts stay forbidden; it is
  also sandboxed (an opaque origin, no forms), so even a hostile snippet can do nothing here.
"""

from __future__ import annotations

import base64
import hashlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def style_hash(css: str) -> str:
    """The CSP source for an inline ``<style>`` whose content is exactly ``css``."""
    digest = hashlib.sha256(css.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def page_policy(css: str, frame_ancestors: str = "'none'") -> str:
    """The app's own pages' policy; ``frame_ancestors`` lists who may frame the page (only
    the sign-up form's pages may name any: the operator's ``signup_frame_ancestors``)."""
    return "; ".join(
        (
            "default-src 'none'",
            f"style-src {style_hash(css)}",
            "img-src 'self'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors}",
            "base-uri 'none'",
        )
    )


ISSUE_POLICY = "; ".join(
    (
        "default-src 'none'",
        "style-src 'unsafe-inline' https:",
        "img-src 'self' https: data:",
        "font-src https: data:",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        # No allow-scripts, no allow-same-origin, no allow-forms; links still open.
        "sandbox allow-popups allow-popups-to-escape-sandbox",
    )
)


def base_headers(policy: str, *, https: bool) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",  # a token in the URL must not leak to other sites
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",  # for browsers that ignore frame-ancestors
    }
    if https:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


class SecurityHeaders:
    """ASGI middleware adding ``headers`` to every response that does not set its own.

    X-Frame-Options cannot name the sites that may frame a page, so a response whose own
    policy allows some (``frame-ancestors`` other than ``'none'``) gets none: browsers that
    know CSP go by frame-ancestors anyway.
    """

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower(): value for name, value in headers}
                policy = present.get(b"content-security-policy", b"frame-ancestors 'none'")
                if b"frame-ancestors 'none'" not in policy:
                    present[b"x-frame-options"] = b""
                missing = [(k, v) for k, v in self.raw if k not in present]
                message["headers"] = [*headers, *missing]
            await send(message)

        await self.app(scope, receive, send_with_headers)
