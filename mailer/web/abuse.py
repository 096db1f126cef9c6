"""Telling people from bots at the sign-up form, without JavaScript, cookies or a captcha.

Pure decisions (no database, no clock of its own): :func:`judge` reads the submitted form.

* **Honeypot**: the form has a field people never see (``website``, moved off-screen by the
  stylesheet, out of the tab order, with a label saying to leave it empty). Bots fill every
  field: anything in it is a bot.
* **Stamp**: the form carries a signed timestamp of when it was served (:class:`~mailer.
  tokens.FormStamp`). Submitted within :data:`MIN_SECONDS` of a blank form (nobody types an
  address that fast), forged, or from the future: a bot. A bot's answer is the same page as
  a person's, so it learns nothing; it only sends no email.
* **No stamp at all** is the plain form embedded on another site (or a bot posting
  directly): not mailed either, but answered with the form again, filled in, with a fresh
  stamp and honeypot, asking to press Subscribe once more: it works for people, and a bot
  that wanted to post once must now read a page and wait. So does a stamp older than
  :data:`MAX_AGE` (a tab left open), one whose page showed another consent text than the
  current one, and a press on that second page within :data:`MIN_SECONDS_AGAIN` (its fields
  are filled in, so a person may well be that quick: asked once more, never dropped).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailer.errors import TokenError
from mailer.tokens import FormStamp, read_form_stamp

HONEYPOT = "website"
STAMP = "stamp"
MIN_SECONDS = 2  # a blank form filled in faster than this is a bot
MIN_SECONDS_AGAIN = 1  # the filled-in second page pressed faster: asked once more
MAX_AGE = 4 * 3600  # a stamp older than this asks again (a person may have left the tab)
CLOCK_SKEW = 60  # workers' clocks may differ this much


class Verdict(enum.StrEnum):
    PERSON = "person"  # record the sign-up, send the confirmation email
    BOT = "bot"  # answer as for a person, send nothing
    AGAIN = "again"  # show the filled-in form with a fresh stamp; send nothing yet


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str  # for the log: why
    stamp: FormStamp | None = None  # the valid stamp, if there was one


def judge(form: Mapping[str, str], keys: Sequence[bytes], now: int, consent_hash: str) -> Judgement:
    """What to do with a submitted sign-up form at Unix time ``now``, while the form shows
    the consent text of version ``consent_hash``."""
    if form.get(HONEYPOT, "").strip():
        return Judgement(Verdict.BOT, "honeypot filled")
    raw = form.get(STAMP, "").strip()
    if not raw:
        return Judgement(Verdict.AGAIN, "no stamp")
    try:
        stamp = read_form_stamp(keys, raw)
    except TokenError:
        return Judgement(Verdict.BOT, "forged stamp")
    age = now - stamp.issued_at
    if age < -CLOCK_SKEW:
        return Judgement(Verdict.BOT, "stamp from the future")
    if age > MAX_AGE:
        return Judgement(Verdict.AGAIN, "stale stamp", stamp)
    if stamp.consent_hash != consent_hash:  # consent is to the words shown: show the new ones
        return Judgement(Verdict.AGAIN, "the consent text changed", stamp)
    if stamp.kind == "again" and age < MIN_SECONDS_AGAIN:
        return Judgement(Verdict.AGAIN, "pressed again quickly", stamp)  # a person may
    if stamp.kind == "form" and age < MIN_SECONDS:
        return Judgement(Verdict.BOT, f"submitted {age} s after the form was served")
    return Judgement(Verdict.PERSON, "ok", stamp)
