"""An issue's outcome as mailbox providers judge a sender: bounce and complaint rates.

Counts per issue, from the ledger (``deliveries.bounce``, see :mod:`mailer.store.bounces`)
and the subscribers' history (unsubscribes through that issue's links):

* ``attempted``: copies handed to a server (sent, or refused in the SMTP dialogue);
* ``delivered``: copies the server took, less those that bounced later;
* hard and soft bounces, policy refusals (the sender's problem) and complaints;
* bounce rates are per attempted copy, complaint and unsubscribe rates per delivered copy
  (Gmail's complaint rate is complaints over messages delivered).

Warnings: a complaint rate at or above 0.1 % (Gmail's advice) or 0.3 % (Gmail's and Yahoo's
limit), and a hard-bounce rate above 2 %.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import distinct, func, select

from mailer.send.ports import DeliveryStatus
from mailer.store.db import Store
from mailer.store.models import Delivery, SubscriberEvent, SubscriberStatus

__all__ = ["COMPLAINT_ADVICE", "COMPLAINT_LIMIT", "HARD_BOUNCE_LIMIT", "IssueRates", "issue_rates"]

COMPLAINT_ADVICE = 0.001  # Gmail: keep spam complaints below 0.1 %
COMPLAINT_LIMIT = 0.003  # Gmail and Yahoo: never reach 0.3 %
HARD_BOUNCE_LIMIT = 0.02  # above 2 % hard bounces a sender gets throttled or blocked


@dataclass(frozen=True)
class IssueRates:
    attempted: int
    delivered: int
    hard: int
    soft: int
    policy: int
    complaints: int
    unsubscribes: int

    @staticmethod
    def _rate(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    @property
    def hard_rate(self) -> float:
        return self._rate(self.hard, self.attempted)

    @property
    def soft_rate(self) -> float:
        return self._rate(self.soft, self.attempted)

    @property
    def complaint_rate(self) -> float:
        return self._rate(self.complaints, self.delivered)

    @property
    def unsubscribe_rate(self) -> float:
        return self._rate(self.unsubscribes, self.delivered)

    def rows(self) -> list[tuple[str, int, float]]:
        """(name, count, rate) in the order the report shows them."""
        return [
            ("delivered", self.delivered, self._rate(self.delivered, self.attempted)),
            ("hard bounces", self.hard, self.hard_rate),
            ("soft bounces", self.soft, self.soft_rate),
            ("policy refusals", self.policy, self._rate(self.policy, self.attempted)),
            ("complaints", self.complaints, self.complaint_rate),
            ("unsubscribes", self.unsubscribes, self.unsubscribe_rate),
        ]

    def warnings(self) -> list[str]:
        found = []
        rate = self.complaint_rate
        if rate >= COMPLAINT_LIMIT:
            found.append(
                f"complaint rate {rate:.2%} is at or above 0.3 %, Gmail's and Yahoo's limit: "
                "mail from this sender will be refused or filed as spam"
            )
        elif rate >= COMPLAINT_ADVICE:
            found.append(f"complaint rate {rate:.2%} is at or above 0.1 %, Gmail's advice")
        if self.hard_rate > HARD_BOUNCE_LIMIT:
            found.append(
                f"hard-bounce rate {self.hard_rate:.2%} is above 2 %: providers throttle or "
                "block senders whose lists hold dead addresses"
            )
        if self.policy:
            found.append(
                f"{self.policy} copies were refused for the sender's sake (spam block, DMARC, "
                "reputation): check DKIM, SPF, DMARC and the sending IP's reputation"
            )
        return found


def issue_rates(store: Store, issue_id: int) -> IssueRates:
    """The rates of the issue with row id ``issue_id``."""
    with store.session() as session:
        rows = session.execute(
            select(Delivery.status, Delivery.bounce, func.count())
            .where(Delivery.issue_id == issue_id)
            .group_by(Delivery.status, Delivery.bounce)
        ).all()
        unsubscribes = session.scalar(
            select(func.count(distinct(SubscriberEvent.subscriber_id))).where(
                SubscriberEvent.issue_id == issue_id,
                SubscriberEvent.new_status == SubscriberStatus.UNSUBSCRIBED.value,
                SubscriberEvent.old_status != SubscriberStatus.UNSUBSCRIBED.value,
            )
        )
    by_bounce: dict[str, int] = {}
    attempted = sent = 0
    for status, bounce, n in rows:
        if status in (DeliveryStatus.SENT, DeliveryStatus.FAILED):
            attempted += n
            by_bounce[bounce or ""] = by_bounce.get(bounce or "", 0) + n
        if status == DeliveryStatus.SENT:
            sent += n if bounce in ("", "complaint") else 0
    return IssueRates(
        attempted=attempted,
        delivered=sent,
        hard=by_bounce.get("hard", 0),
        soft=by_bounce.get("soft", 0),
        policy=by_bounce.get("policy", 0),
        complaints=by_bounce.get("complaint", 0),
        unsubscribes=int(unsubscribes or 0),
    )
