"""The classifier on a public corpus of real-world bounces (flufl.bounce's 117 messages),
alone and through the whole pipeline (proof added, a real database)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mailer.bounces.parse import read_report
from mailer.bounces.ports import Kind
from mailer.bounces.process import classify_report
from mailer.config import Config
from mailer.store.db import Store
from tests.bounces.corpus import corpus, labels
from tests.bounces.helpers import Box, bounce_config, send_issue, status_of, subscribe


def test_every_corpus_message_is_classified_as_a_person_would() -> None:
    messages, expected = corpus(), labels()
    assert set(messages) == set(expected)  # every message labelled, none missing
    got = {name: classify_report(read_report(raw))[0].value for name, raw in messages.items()}
    wrong = {name: (got[name], expected[name]) for name in messages if got[name] != expected[name]}
    print(f"corpus: {len(messages)} messages, {Counter(expected.values())}")
    print(f"classified right: {len(messages) - len(wrong)} of {len(messages)}")
    assert wrong == {}


def test_the_corpus_through_the_pipeline_with_proof_added(
    store: Store, config: Config, tmp_path: Path
) -> None:
    messages, expected = corpus(), labels()
    cfg = bounce_config(config, tmp_path / "outbox")
    names = sorted(messages)
    reader = {name: f"reader{i}@example.org" for i, name in enumerate(names)}
    subscribe(store, *reader.values())
    copies = send_issue(store, cfg, 1)
    box = Box(tmp_path / "bounces")
    for name in names:
        # As Postfix's local delivery would have added it: the copy's own VERP address.
        box.put(f"Delivered-To: {copies[reader[name]].envelope_from}\n".encode() + messages[name])
    summary = box.run(store, cfg)
    counts = Counter(expected.values())
    assert {k.value: n for k, n in summary.counts.items() if n} == dict(counts)
    for name in names:
        status = status_of(store, reader[name])
        assert status == ("bounced" if expected[name] == "hard" else "active"), name
    assert len(box.names("processed")) == len(names) - counts[Kind.UNRECOGNISED.value]
