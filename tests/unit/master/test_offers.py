"""The offer book: indexes, retirement reasons, ids used once."""

from __future__ import annotations

import pytest

from mensa.master.offers import OfferBook, Retired
from mensa.proto.resources import Resources

R = Resources.parse


def test_add_index_and_retire() -> None:
    book = OfferBook()
    book.add("o1", framework_id="f", agent_id="a", resources=R("cpus:1"), now=1.0)
    book.add("o2", framework_id="f", agent_id="b", resources=R("cpus:2"), now=2.0)
    assert [o.offer_id for o in book.for_framework("f")] == ["o1", "o2"]
    assert book.offered_on("b") == R("cpus:2")
    offer = book.retire("o1", Retired.USED)
    assert offer.resources == R("cpus:1")
    assert book.get("o1") is None and book.why_gone("o1") is Retired.USED
    assert book.for_agent("a") == []
    assert [o.offer_id for o in book.older_than(3.0)] == ["o2"]
    with pytest.raises(KeyError):
        book.retire("o1", Retired.DECLINED)


def test_an_offer_id_is_never_reused() -> None:
    book = OfferBook()
    book.add("o1", framework_id="f", agent_id="a", resources=R("cpus:1"), now=1.0)
    book.retire("o1", Retired.RESCINDED)
    with pytest.raises(ValueError):
        book.add("o1", framework_id="f", agent_id="a", resources=R("cpus:1"), now=2.0)


def test_retired_memory_is_bounded() -> None:
    book = OfferBook(retired_memory=2)
    for i in range(3):
        book.add(f"o{i}", framework_id="f", agent_id="a", resources=R("cpus:1"), now=i)
        book.retire(f"o{i}", Retired.DECLINED)
    assert book.why_gone("o0") is None and book.why_gone("o2") is Retired.DECLINED
