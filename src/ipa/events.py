"""Event sets: the columns every tool shares, and their CSV file format.

An event is a *source* (impression or click: ``is_trigger = 0``, carries a
``breakdown_key``) or a *trigger* (conversion: ``is_trigger = 1``, carries a
``trigger_value``). Both carry a ``timestamp``, a ``match_key`` (the user), a
``constraint_id`` (a trigger only joins sources of the same constraint id)
and the ``site`` where the event happened (``""``: the querying site).
A source's ``trigger_value`` and a trigger's ``breakdown_key`` are ignored.

CSV format (UTF-8/ASCII, ``\\n`` or ``\\r\\n`` line ends)::

    timestamp,match_key,is_trigger,breakdown_key,trigger_value,constraint_id,site
    1700000000,12345,0,3,0,0,news.example
    1700000100,12345,1,0,250,0,shop.example

- Line 1 is exactly that header; the ``site`` column may be left out (then
  every event belongs to the querying site), and so may ``constraint_id``
  when ``site`` is (then every constraint id is 0).
- Every other line is one event: the header's number of fields. The numeric
  fields are non-negative decimal integers below 2**64 (digits only: no
  sign, spaces, or empty fields); ``is_trigger`` is 0 or 1. A ``site`` is
  at most 255 UTF-8 bytes with no control characters (no comma: fields are
  not quoted); an empty one means the querying site. No blank lines; the
  file may end with a newline. Widths a query allows (e.g. match-key bits)
  are checked where the query is, not here.
- Any violation raises :class:`~ipa.errors.InputError` naming the file, the
  1-based line number (the header is line 1) and the field.

Reading is one bulk numpy parse (about 0.3 s per 10^6 rows); the file is
scanned line by line only when that parse fails, to name the bad line.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Sequence
from dataclasses import dataclass, fields
from os import PathLike
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ipa.errors import InputError

__all__ = ["COLUMNS", "SITE", "Events", "read_csv", "write_csv"]

COLUMNS: tuple[str, ...] = (
    "timestamp",
    "match_key",
    "is_trigger",
    "breakdown_key",
    "trigger_value",
    "constraint_id",
)
"""The numeric CSV columns, in order; ``constraint_id`` (the last) is optional in a file."""
SITE = "site"
"""The optional last CSV column: where each event happened (empty: the querying site)."""
_MAX_SITE_BYTES = 255

_U64_MAX = 2**64 - 1
_DIGITS = b"0123456789"


@dataclass(frozen=True, eq=False)
class Events:
    """A set of n events as seven equal-length, read-only numpy columns.

    ``is_trigger`` is ``bool``, ``site`` is a numpy string column (``""``:
    the querying site; ``None``: every event is on the querying site); every
    other column is ``uint64``. The constructor accepts any integer
    array-likes (or ``is_trigger`` as 0/1 integers), checks them and stores
    read-only views; it raises :class:`InputError` for unequal lengths,
    non-1-D or non-integer columns, values outside ``[0, 2**64)``,
    ``is_trigger`` values other than 0 and 1, or a site that is not a string
    of at most 255 UTF-8 bytes without control characters.
    """

    timestamp: npt.NDArray[np.uint64]
    match_key: npt.NDArray[np.uint64]
    is_trigger: npt.NDArray[np.bool_]
    breakdown_key: npt.NDArray[np.uint64]
    trigger_value: npt.NDArray[np.uint64]
    constraint_id: npt.NDArray[np.uint64]
    site: npt.NDArray[np.str_] = None  # type: ignore[assignment]  # None: all on the querying site

    def __post_init__(self) -> None:
        if self.site is None:
            object.__setattr__(self, "site", np.full(len(np.asarray(self.timestamp)), "", dtype="<U1"))
        for f in fields(self):
            value = getattr(self, f.name)
            column = _as_site_column(value) if f.name == SITE else _as_column(f.name, value)
            column = column.view()
            column.flags.writeable = False
            object.__setattr__(self, f.name, column)
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(lengths.values())) > 1:
            raise InputError(f"event columns must have equal lengths, got {lengths}")

    @classmethod
    def from_columns(
        cls,
        *,
        timestamp: npt.ArrayLike,
        match_key: npt.ArrayLike,
        is_trigger: npt.ArrayLike,
        breakdown_key: npt.ArrayLike,
        trigger_value: npt.ArrayLike,
        constraint_id: npt.ArrayLike | None = None,
        site: npt.ArrayLike | None = None,
    ) -> Events:
        """Build from array-likes; ``constraint_id=None`` means all zeros, ``site=None`` all ``""``."""
        if constraint_id is None:
            constraint_id = np.zeros(len(np.asarray(timestamp)), dtype=np.uint64)
        site_column = None if site is None else np.asarray(site)
        # The fields' types are what __post_init__ makes of any array-like; a dataclass cannot say so.
        columns = timestamp, match_key, is_trigger, breakdown_key, trigger_value, constraint_id, site_column
        return cls(*columns)  # type: ignore[arg-type]

    @classmethod
    def empty(cls) -> Events:
        """The event set with no rows."""
        zeros = np.zeros(0, dtype=np.uint64)
        return cls(zeros, zeros, np.zeros(0, dtype=bool), zeros, zeros, zeros)

    def __len__(self) -> int:
        return len(self.timestamp)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Events):
            return NotImplemented
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    __hash__ = None  # type: ignore[assignment]  # columns are arrays: not hashable

    def take(self, indices: npt.ArrayLike) -> Events:
        """The events at ``indices`` (an index array or boolean mask), in that order."""
        return Events(*(getattr(self, f.name)[indices] for f in fields(self)))

    def sites(self) -> list[str]:
        """The distinct non-empty sites the events name, sorted."""
        return sorted(str(s) for s in np.unique(self.site) if s)

    def off_site(self, querying_site: str) -> np.ndarray:
        """(n,) bool: events made on a site other than ``querying_site`` (``""`` rows are on it)."""
        return (self.site != "") & (self.site != querying_site)


def concat(blocks: Sequence[Events]) -> Events:
    """The rows of ``blocks`` one after the other."""
    if not blocks:
        return Events.empty()
    return Events(*(np.concatenate([getattr(b, f.name) for b in blocks]) for f in fields(Events)))


def _as_site_column(values: npt.ArrayLike) -> np.ndarray:
    """``values`` as a 1-D numpy string column, or InputError naming the first bad site."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"site must be a 1-D column, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype="<U1")
    if array.dtype.kind != "U":
        if array.dtype != object or not all(isinstance(v, str) for v in array):
            raise InputError(f"site must hold strings, got dtype {array.dtype}")
        array = array.astype(str)
    for site in np.unique(array).tolist():
        problem = _site_problem(site)
        if problem:
            raise InputError(f"site {site!r}: {problem}")
    return array


def _site_problem(site: str) -> str:
    """Why ``site`` is not a valid site name, or ``""``."""
    if len(site.encode("utf-8")) > _MAX_SITE_BYTES:
        return f"longer than {_MAX_SITE_BYTES} UTF-8 bytes"
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "," for c in site):
        return "has a comma or a control character"
    return ""


def _as_column(name: str, values: npt.ArrayLike) -> np.ndarray:
    """``values`` as a 1-D uint64 column (bool for ``is_trigger``), or InputError."""
    array = np.asarray(values)
    if array.dtype.kind not in "iub" and array.size and not isinstance(values, np.ndarray):
        array = np.array(values, dtype=object)  # e.g. [2**64 - 1, 1], which numpy makes float
    if array.ndim != 1:
        raise InputError(f"{name} must be a 1-D column, got shape {array.shape}")
    if array.size == 0:
        array = array.astype(np.uint64)
    elif array.dtype == object:
        try:
            ints = [operator.index(v) for v in array]
        except TypeError:
            raise InputError(f"{name} must hold integers, got dtype object") from None
        if min(ints) < 0 or max(ints) > _U64_MAX:
            raise InputError(f"{name} values must be in [0, 2**64)")
        array = np.array(ints, dtype=np.uint64)
    elif array.dtype.kind == "i":
        if (array < 0).any():
            raise InputError(f"{name} values must be non-negative, got {array.min()}")
        array = array.astype(np.uint64)
    elif array.dtype.kind not in "ub":
        raise InputError(f"{name} must hold integers, got dtype {array.dtype}")
    if name == "is_trigger":
        if array.dtype != np.bool_:
            if (array > 1).any():
                raise InputError(f"is_trigger values must be 0 or 1, got {array.max()}")
            array = array.astype(np.bool_)
        return array
    return array.astype(np.uint64, copy=False)


def read_csv(path: str | PathLike[str]) -> Events:
    """Read an event CSV file (format in the module docstring).

    Raises InputError naming the line and field of the first problem, or when
    the file cannot be read.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark, as some editors write
        data = data[3:]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    header, _, body = data.partition(b"\n")
    columns = _parse_header(name, header)
    if not body:
        return Events.empty()
    numeric_columns = columns[:-1] if columns[-1] == SITE else columns
    numeric, site = _split_sites(body) if columns[-1] == SITE else (body, None)
    table = _parse_body_fast(numeric, len(numeric_columns))
    if table is None:
        _scan_body(name, body, columns)
        raise InputError(f"{name}: malformed event rows")  # the scan names the line first
    bad = np.flatnonzero(table[:, 2] > 1)
    if len(bad):
        line, value = int(bad[0]) + 2, int(table[bad[0], 2])
        raise InputError(f"{name} line {line}, field is_trigger: must be 0 or 1, got {value}")
    parsed = list(np.ascontiguousarray(table.T))  # one contiguous array per column
    if len(parsed) < len(COLUMNS):
        parsed.append(np.zeros(len(table), dtype=np.uint64))  # no constraint_id column
    sites = _site_column(name, site) if site is not None else None
    return Events.from_columns(**dict(zip(COLUMNS, parsed, strict=True)), site=sites)


def _split_sites(body: bytes) -> tuple[bytes, list[bytes]]:
    """The numeric part of every line, and every line's last field (its site)."""
    lines = body.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the file's final newline
    parts = [line.rpartition(b",") for line in lines]
    return b"\n".join([p[0] for p in parts]), [p[2] for p in parts]


def _site_column(name: str, sites: list[bytes]) -> np.ndarray:
    """The site field of every line as a string column, or InputError naming the first bad line."""
    distinct, inverse = np.unique(np.array(sites, dtype=object), return_inverse=True)
    texts: list[str] = []
    for raw in distinct.tolist():
        line = int(np.flatnonzero(inverse == len(texts))[0]) + 2
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{name} line {line}, field site: not UTF-8") from None
        problem = _site_problem(text)
        if problem:
            raise InputError(f"{name} line {line}, field site: {text!r} is {problem}")
        texts.append(text)
    return np.array(texts, dtype=str)[inverse.ravel()] if texts else np.zeros(0, dtype="<U1")


def _parse_header(name: str, header: bytes) -> tuple[str, ...]:
    """The columns named by ``header`` (five, six, or six and ``site``), or InputError."""
    full = (*COLUMNS, SITE)
    expected = ",".join(full)
    if not header:
        raise InputError(f"{name} line 1: missing header; expected {expected!r}")
    got = header.decode("utf-8", errors="replace").split(",")
    if got in (list(full), list(COLUMNS), list(COLUMNS[:-1])):
        return tuple(got)
    for column, field in zip(full, got, strict=False):
        if field != column:
            raise InputError(
                f"{name} line 1, field {column}: header has {field!r} where {column!r} "
                f"was expected; expected header {expected!r} (constraint_id and site optional)"
            )
    if len(got) < len(COLUMNS) - 1:
        raise InputError(
            f"{name} line 1, field {COLUMNS[len(got)]}: header is missing it; "
            f"expected header {expected!r} (constraint_id and site optional)"
        )
    raise InputError(
        f"{name} line 1: header has {len(got)} fields, expected at most {len(full)}: "
        f"unexpected {got[len(full)]!r} after site"
    )


def _parse_body_fast(body: bytes, num_columns: int) -> np.ndarray | None:
    """All rows as an (n, num_columns) uint64 table, or None if anything is off."""
    if body.translate(None, _DIGITS + b",\n"):
        return None  # a character other than digits, commas and line ends
    if body.startswith(b"\n") or b"\n\n" in body:
        return None  # a blank line: loadtxt would skip it silently
    try:
        table = np.loadtxt(
            io.BytesIO(body),
            dtype=np.uint64,
            delimiter=",",
            comments=None,
            ndmin=2,
        )
    except ValueError:
        return None
    if table.shape[1] != num_columns:
        return None
    return table


def _scan_body(name: str, body: bytes, columns: Sequence[str]) -> None:
    """Check ``body`` line by line; raise InputError at the first bad line."""
    lines = body.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the file's final newline
    for number, line in enumerate(lines, start=2):
        where = f"{name} line {number}"
        fields_ = line.split(b",")
        if line == b"":
            raise InputError(f"{where}: blank line; expected {len(columns)} fields")
        if len(fields_) < len(columns):
            raise InputError(
                f"{where}, field {columns[len(fields_)]}: missing; expected {len(columns)} "
                f"fields ({','.join(columns)}), got {len(fields_)}"
            )
        if len(fields_) > len(columns):
            raise InputError(
                f"{where}: expected {len(columns)} fields ({','.join(columns)}), "
                f"got {len(fields_)}: unexpected field after {columns[-1]}"
            )
        for column, field in zip(columns, fields_, strict=True):
            text = field.decode("utf-8", errors="replace")
            if column == SITE:
                continue  # checked with the whole column (_site_column)
            if not field or field.translate(None, _DIGITS):
                raise InputError(f"{where}, field {column}: {text!r} is not a non-negative integer")
            if int(field) > _U64_MAX:
                raise InputError(f"{where}, field {column}: {text} does not fit in 64 bits")
            if column == "is_trigger" and int(field) > 1:
                raise InputError(f"{where}, field is_trigger: must be 0 or 1, got {text}")


def write_csv(events: Events, path: str | PathLike[str]) -> None:
    """Write ``events`` to ``path`` (about 1 s per 10^6 rows).

    The header has the six numeric columns, and ``site`` too when some event names a site.
    """
    columns = [getattr(events, column).astype(np.uint64).tolist() for column in COLUMNS]
    header, row_format = list(COLUMNS), ",".join(["%d"] * len(COLUMNS))
    if events.sites():
        columns.append(events.site.tolist())
        header.append(SITE)
        row_format += ",%s"
    row_format += "\n"
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(",".join(header) + "\n")
        out.write("".join(map(row_format.__mod__, zip(*columns, strict=True))))
