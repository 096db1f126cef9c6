"""Finding a subscriber by address for a test copy (`send --to/--as`): the same key as the
list uses, from the address normaliser."""

from __future__ import annotations

from mailer.store.db import Store
from mailer.store.ledger import SqlSubscriberLookup
from mailer.store.subscribers import add_subscriber


def test_the_lookup_finds_an_address_as_the_list_normalises_it(store: Store) -> None:
    jane = add_subscriber(store, "Jane@bücher.de", name="Jane")
    lookup = SqlSubscriberLookup(store)
    for given in (
        "jane@bücher.de",
        " JANE@BÜCHER.DE ",
        "jane@xn--bcher-kva.de",
        "Jane@XN--BCHER-KVA.DE",
    ):
        found = lookup.find(given)
        assert found is not None, given
        assert (found.uid, found.email, found.name) == (jane.uid, "Jane@bücher.de", "Jane")
    assert lookup.find("not an address") is None
    assert lookup.find("someone@else.example") is None
