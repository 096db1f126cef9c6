from __future__ import annotations

from send_helpers import add_subscribers, make_issue, with_server

from mailer.send.run import SendOptions, send_issue
from mailer.send.transport import transport_from_config
from mailer.store.ledger import SqlIssues


def test_smoke(store, config, smtp) -> None:
    emails = add_subscribers(store, 20)
    cfg = with_server(config, smtp)
    summary = send_issue(SqlIssues(store), make_issue(), cfg, transport_from_config(cfg), SendOptions(connections=3))
    print(summary)
    assert sorted(smtp.recipients) == sorted(emails)
