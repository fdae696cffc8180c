"""Bindings: every field changes ``info``; names are checked; tags tell the fields apart."""

import pytest

from ipa.crypto.binding import Binding, Purpose, info, tag
from ipa.errors import InputError

BASE = Binding("shop.example", "collector.example", 7, "provider.example")


def test_every_bound_field_changes_info():
    reference = info(Purpose.MATCH_KEY, 1, 1, 1, 0, BASE)
    variants = [
        info(Purpose.BATCH_KEY, 1, 1, 1, 0, BASE),
        info(Purpose.MATCH_KEY, 2, 1, 1, 0, BASE),
        info(Purpose.MATCH_KEY, 1, 2, 1, 0, BASE),
        info(Purpose.MATCH_KEY, 1, 1, 2, 0, BASE),
        info(Purpose.MATCH_KEY, 1, 1, 1, 1, BASE),
        info(
            Purpose.MATCH_KEY,
            1,
            1,
            1,
            0,
            Binding("other.example", "collector.example", 7, "provider.example"),
        ),
        info(Purpose.MATCH_KEY, 1, 1, 1, 0, Binding("shop.example", "other.example", 7, "provider.example")),
        info(
            Purpose.MATCH_KEY, 1, 1, 1, 0, Binding("shop.example", "collector.example", 8, "provider.example")
        ),
        info(Purpose.MATCH_KEY, 1, 1, 1, 0, Binding("shop.example", "collector.example", 7, "")),
    ]
    assert len({reference, *variants}) == len(variants) + 1
    assert reference.startswith(b"private-attribution\x00")


def test_names_are_length_prefixed():
    a = info(Purpose.MATCH_KEY, 1, 1, 1, 0, Binding("ab", "c", 1, "d"))
    b = info(Purpose.MATCH_KEY, 1, 1, 1, 0, Binding("a", "bc", 1, "d"))
    assert a != b


def test_tags_separate_kinds_and_names():
    assert tag("site", "x.example") != tag("report_collector", "x.example")
    assert tag("site", "x.example") != tag("site", "y.example")
    assert len(tag("site", "")) == 8
    assert BASE.tags() == (
        tag("site", "shop.example"),
        tag("report_collector", "collector.example"),
        tag("match_key_provider", "provider.example"),
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"site": ""}, "site must be 1 to 255"),
        ({"report_collector": "x" * 256}, "report_collector must be 1 to 255"),
        ({"match_key_provider": 3}, "match_key_provider must be a string"),
        ({"epoch": 65536}, "epoch must be in"),
        ({"epoch": -1}, "epoch must be in"),
    ],
)
def test_binding_checks(kwargs, message):
    fields = {"site": "s", "report_collector": "r", "epoch": 1, "match_key_provider": ""} | kwargs
    with pytest.raises(InputError, match=message):
        Binding(**fields)
