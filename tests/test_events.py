"""Tests of ipa.events: the Events columns and the CSV format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ipa.errors import InputError
from ipa.events import COLUMNS, Events, read_csv, write_csv

HEADER = ",".join(COLUMNS)
HEADER5 = ",".join(COLUMNS[:-1])
U64_MAX = 2**64 - 1


def _events(rows: list[tuple[int, int, int, int, int, int]]) -> Events:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in COLUMNS]
    return Events.from_columns(**dict(zip(COLUMNS, columns, strict=True)))


def _write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


# --- Events -------------------------------------------------------------------------------


def test_columns_have_the_documented_dtypes_and_are_read_only() -> None:
    events = _events([(5, U64_MAX, 1, 0, 7, 2), (4, 0, 0, 3, 0, 0)])
    assert len(events) == 2
    assert events.is_trigger.dtype == np.bool_
    for name in ("timestamp", "match_key", "breakdown_key", "trigger_value", "constraint_id"):
        assert getattr(events, name).dtype == np.uint64
    assert events.match_key.tolist() == [U64_MAX, 0]
    with pytest.raises(ValueError, match="read-only"):
        events.timestamp[0] = 1


def test_constructor_does_not_make_the_callers_array_read_only() -> None:
    timestamp = np.array([1, 2], dtype=np.uint64)
    Events.from_columns(
        timestamp=timestamp, match_key=[1, 2], is_trigger=[0, 1], breakdown_key=[0, 0],
        trigger_value=[0, 0],
    )  # fmt: skip
    timestamp[0] = 9  # still writable


def test_from_columns_defaults_constraint_id_to_zero() -> None:
    events = Events.from_columns(
        timestamp=[1, 2], match_key=[3, 3], is_trigger=[0, 1], breakdown_key=[1, 0],
        trigger_value=[0, 5],
    )  # fmt: skip
    assert events.constraint_id.tolist() == [0, 0]
    assert events.is_trigger.tolist() == [False, True]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timestamp": [1]}, "equal lengths"),
        ({"is_trigger": [0, 2]}, "is_trigger values must be 0 or 1"),
        ({"breakdown_key": [-1, 0]}, "breakdown_key values must be non-negative"),
        ({"match_key": [2**64, 0]}, r"match_key values must be in \[0, 2\*\*64\)"),
        ({"trigger_value": [1.5, 2.0]}, "trigger_value must hold integers"),
        ({"trigger_value": [1.0, 2]}, "trigger_value must hold integers"),
        ({"constraint_id": [[0, 1]]}, "constraint_id must be a 1-D column"),
        ({"timestamp": ["1", "2"]}, "timestamp must hold integers"),
    ],
)
def test_constructor_rejects_bad_columns(change: dict[str, object], message: str) -> None:
    columns: dict[str, object] = {
        "timestamp": [1, 2], "match_key": [3, 3], "is_trigger": [0, 1],
        "breakdown_key": [1, 0], "trigger_value": [0, 5], "constraint_id": [0, 0],
    }  # fmt: skip
    columns.update(change)
    with pytest.raises(InputError, match=message):
        Events.from_columns(**columns)  # type: ignore[arg-type]


def test_equality_empty_and_take() -> None:
    events = _events([(1, 2, 0, 3, 0, 0), (4, 5, 1, 0, 6, 1)])
    assert events == _events([(1, 2, 0, 3, 0, 0), (4, 5, 1, 0, 6, 1)])
    assert events != _events([(1, 2, 0, 3, 0, 0), (4, 5, 1, 0, 7, 1)])
    assert events.take([1]) == _events([(4, 5, 1, 0, 6, 1)])
    assert events.take(np.array([False, False])) == Events.empty()
    assert len(Events.empty()) == 0


# --- CSV round trip ----------------------------------------------------------------------


def test_round_trip_keeps_every_value(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 5000
    events = Events.from_columns(
        timestamp=rng.integers(0, 2**32, n, dtype=np.uint64),
        match_key=np.append(rng.integers(0, U64_MAX, n - 1, dtype=np.uint64, endpoint=True),
                            np.uint64(U64_MAX)),
        is_trigger=rng.integers(0, 2, n),
        breakdown_key=rng.integers(0, 256, n, dtype=np.uint64),
        trigger_value=rng.integers(0, 2**16, n, dtype=np.uint64),
        constraint_id=rng.integers(0, 4, n, dtype=np.uint64),
    )  # fmt: skip
    path = tmp_path / "events.csv"
    write_csv(events, path)
    assert path.read_text().splitlines()[0] == HEADER
    assert read_csv(path) == events
    assert read_csv(str(path)) == events


def test_zero_rows_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    write_csv(Events.empty(), path)
    assert path.read_text() == HEADER + "\n"
    assert len(read_csv(path)) == 0
    assert len(read_csv(_write(tmp_path, HEADER))) == 0  # no final newline
    assert len(read_csv(_write(tmp_path, HEADER5 + "\n"))) == 0


def test_missing_constraint_id_column_means_zero(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{HEADER5}\n1,2,0,3,0\n4,2,1,0,9\n")
    assert read_csv(path) == _events([(1, 2, 0, 3, 0, 0), (4, 2, 1, 0, 9, 0)])


def test_crlf_line_ends_and_no_final_newline(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{HEADER}\r\n1,2,0,3,0,1\r\n4,2,1,0,9,1")
    assert read_csv(path) == _events([(1, 2, 0, 3, 0, 1), (4, 2, 1, 0, 9, 1)])


def test_largest_values_are_legal(tmp_path: Path) -> None:
    m = U64_MAX
    path = _write(tmp_path, f"{HEADER}\n{m},{m},1,{m},{m},{m}\n")
    assert read_csv(path) == _events([(m, m, 1, m, m, m)])


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_csv(tmp_path / "nope.csv")


# --- malformed files name the line and the field ------------------------------------------

GOOD = "1,2,0,3,0,0"


@pytest.mark.parametrize(
    ("text", "where", "detail"),
    [
        ("", "line 1", "missing header"),
        ("1,2,0,3,0,0\n", "line 1, field timestamp", "'1'"),
        ("timestamp,mk,is_trigger,breakdown_key,trigger_value\n", "line 1, field match_key",
         "'mk'"),
        ("timestamp,match_key,is_trigger\n", "line 1, field breakdown_key", "missing"),
        (f"{HEADER},extra\n", "line 1", "'extra'"),
        (f"{HEADER}\n{GOOD}\n1,2,0,3,0\n", "line 3, field constraint_id", "got 5"),
        (f"{HEADER}\n{GOOD}\n1,2,0\n", "line 3, field breakdown_key", "got 3"),
        (f"{HEADER}\n{GOOD},7\n", "line 2", "got 7"),
        (f"{HEADER5}\n1,2,0,3,0,0\n", "line 2", "got 6"),
        (f"{HEADER}\n{GOOD}\n{GOOD}\n{GOOD}\n{GOOD}\n{GOOD}\n1,2,0,x,0,0\n",
         "line 7, field breakdown_key", "'x' is not a non-negative integer"),
        (f"{HEADER}\n-1,2,0,3,0,0\n", "line 2, field timestamp", "'-1' is not a non-negative"),
        (f"{HEADER}\n1,,0,3,0,0\n", "line 2, field match_key", "'' is not a non-negative"),
        (f"{HEADER}\n1,2,0,3,0,\n", "line 2, field constraint_id", "'' is not a non-negative"),
        (f"{HEADER}\n1,2,0,3, 5,0\n", "line 2, field trigger_value", "' 5'"),
        (f"{HEADER}\n1,2,0,3,+5,0\n", "line 2, field trigger_value", "'+5'"),
        (f"{HEADER}\n1.5,2,0,3,0,0\n", "line 2, field timestamp", "'1.5'"),
        (f"{HEADER}\n1,2,0,3,0,0x1\n", "line 2, field constraint_id", "'0x1'"),
        (f"{HEADER}\n1,{2**64},0,3,0,0\n", "line 2, field match_key", "does not fit in 64 bits"),
        (f"{HEADER}\n{GOOD}\n1,2,2,3,0,0\n", "line 3, field is_trigger", "must be 0 or 1, got 2"),
        (f"{HEADER}\n1,2,7,3,0,0\n{GOOD}\n1,x,0,3,0,0\n", "line 2, field is_trigger", "got 7"),
        (f"{HEADER}\n{GOOD}\n\n{GOOD}\n", "line 3", "blank line"),
        (f"{HEADER}\n{GOOD}\n\n", "line 3", "blank line"),
    ],
)  # fmt: skip
def test_malformed_file_names_line_and_field(tmp_path: Path, text: str, where: str, detail: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        read_csv(path)
    message = str(caught.value)
    assert message.startswith(f"{path} {where}")
    assert detail in message


# --- sites --------------------------------------------------------------------------------

HEADER7 = HEADER + ",site"


def test_site_column_round_trips_and_empty_sites_are_the_querying_site(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{HEADER7}\n1,7,0,1,0,0,news.example\n2,7,1,0,50,0,\n3,8,1,0,9,1,shop.example\n")
    events = read_csv(path)
    assert events.site.tolist() == ["news.example", "", "shop.example"]
    assert events.sites() == ["news.example", "shop.example"]
    assert events.off_site("news.example").tolist() == [False, False, True]
    again = tmp_path / "again.csv"
    write_csv(events, again)
    assert again.read_text() == path.read_text()
    assert read_csv(again) == events


def test_files_without_sites_keep_the_six_column_header(tmp_path: Path) -> None:
    events = _events([(1, 2, 0, 1, 0, 0)])
    assert events.site.tolist() == [""] and events.sites() == []
    write_csv(events, tmp_path / "plain.csv")
    assert (tmp_path / "plain.csv").read_text().splitlines()[0] == HEADER


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{HEADER7}\n1,7,0,1,0,0,a.example\n2,7,1,0,50,0\n", "line 3, field site: missing"),
        (f"{HEADER7}\n1,7,0,1,0,0,a\tb\n", r"line 2, field site: 'a\\tb' is has a comma or a control"),
        (f"{HEADER7}\n1,7,0,1,0,0,{'x' * 256}\n", "line 2, field site: .* longer than 255"),
        (f"{HEADER7}\n1,7,0,1,0,x,a.example\n", "line 2, field constraint_id: 'x'"),
        (f"{HEADER5},site\n1,7,0,1,0,a.example\n", "line 1, field constraint_id: header has 'site'"),
        (f"{HEADER7},more\n1,7,0,1,0,0,a,b\n", "unexpected 'more' after site"),
    ],
)
def test_bad_sites_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_csv(_write(tmp_path, text))


def test_site_column_is_checked_in_the_constructor() -> None:
    with pytest.raises(InputError, match="site 'a,b': has a comma"):
        Events.from_columns(
            timestamp=[1], match_key=[1], is_trigger=[0], breakdown_key=[0], trigger_value=[0], site=["a,b"]
        )
    with pytest.raises(InputError, match="site must hold strings"):
        Events.from_columns(
            timestamp=[1], match_key=[1], is_trigger=[0], breakdown_key=[0], trigger_value=[0], site=[3]
        )
