"""Synthetic seq2seq tasks made in code: deterministic for ``(size, seed)``, no files needed.

They are the ``dates`` and ``addition`` values of ``data.source`` (see :mod:`seq2seq.data.corpus`):

* **dates** (:func:`make_dates`): a date written by a human in one of the
  :data:`DATE_FORMATS` (``"Sep 27 1994"``, ``"tuesday, september 27, 1994"``, ``"9/27/1994"``...)
  is translated into ISO form (``"1994-09-27"``); the model must learn month names, weekdays
  and the order of day, month and year.
* **addition** (:func:`make_addition`): a sum like ``"16+75"`` is translated into its result
  ``"91"``, operands uniform in 0..999; the model must learn to carry digits.
* **textbook addition** (:func:`make_addition_textbook`, ``data.addition_style=textbook``): the
  same problems made as the textbook's ``addition.txt`` was, operands of 1 to 3 random
  digits, each problem once, question and answer padded with spaces to a fixed width.

Each task gives a list of ``(source, target)`` pairs; :func:`stream` gives the same pairs
one at a time (for streamed preparation). How many go to train, valid and test, and which
task a config asks for, is :mod:`seq2seq.data.corpus`'s business (``synthetic_split_sizes``,
``iter_synthetic``).
"""

from __future__ import annotations

import datetime
import itertools
import random
from collections.abc import Callable, Iterator

from ..config.sections import TEXTBOOK_ADDITION_MAX
from .pairs import Pair

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fixed, not calendar.month_name (locale-dependent)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FIRST_DAY = datetime.date(1900, 1, 1).toordinal()
_LAST_DAY = datetime.date(2099, 12, 31).toordinal()


def _month(d: datetime.date) -> str:
    return _MONTHS[d.month - 1]


def _weekday(d: datetime.date) -> str:
    return _WEEKDAYS[d.weekday()]


# Each format writes one date; the example is 1994-09-27, a Tuesday. There are no two-digit
# years (ambiguous across 1900-2099) and no day/month/year with slashes (it would clash with 9/27/1994).
DATE_FORMATS: dict[str, Callable[[datetime.date], str]] = {
    "september 27, 1994": lambda d: f"{_month(d).lower()} {d.day}, {d.year}",
    "September 27, 1994": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "SEPTEMBER 27, 1994": lambda d: f"{_month(d).upper()} {d.day}, {d.year}",
    "27 September 1994": lambda d: f"{d.day} {_month(d)} {d.year}",
    "Sep 27 1994": lambda d: f"{_month(d)[:3]} {d.day} {d.year}",
    "sep 27, 1994": lambda d: f"{_month(d)[:3].lower()} {d.day}, {d.year}",
    "27 sep 1994": lambda d: f"{d.day} {_month(d)[:3].lower()} {d.year}",
    "tuesday, september 27, 1994": lambda d: f"{_weekday(d).lower()}, {_month(d).lower()} {d.day}, {d.year}",
    "TUESDAY, SEPTEMBER 27, 1994": lambda d: f"{_weekday(d).upper()}, {_month(d).upper()} {d.day}, {d.year}",
    "Tue, Sep 27, 1994": lambda d: f"{_weekday(d)[:3]}, {_month(d)[:3]} {d.day}, {d.year}",
    "Tuesday, 27 September 1994": lambda d: f"{_weekday(d)}, {d.day} {_month(d)} {d.year}",
    "9/27/1994": lambda d: f"{d.month}/{d.day}/{d.year}",
    "27.09.1994": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "1994/09/27": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
}
_FORMATS = tuple(DATE_FORMATS.values())


def make_dates(n: int, seed: int) -> list[Pair]:
    """``n`` pairs (human-written date, ISO ``YYYY-MM-DD``), e.g. ``("Sep 27 1994", "1994-09-27")``.

    Dates are uniform over 1900-01-01..2099-12-31, formats uniform over :data:`DATE_FORMATS`.
    See :func:`_unique` for duplicates; ``make_dates(k, s)`` is a prefix of ``make_dates(n, s)``.
    """

    return _unique(n, seed, _date_pair)


def make_addition(n: int, seed: int) -> list[Pair]:
    """``n`` pairs like ``("16+75", "91")``: operands uniform in 0..999, no spaces."""

    return _unique(n, seed, _addition_pair)


ADDITION_WIDTHS = (7, 4)  # "999+999", "1998": the textbook pads both sides to these with spaces

# half the 500,500 distinct unordered problems: beyond that, drawing unseen ones by rejection
# slows down sharply


def make_addition_textbook(n: int, seed: int) -> list[Pair]:
    """``n`` pairs like ``("16+75  ", "91  ")``, made as the textbook's ``addition.txt`` was.

    Each operand has 1 to 3 digits (uniform), each digit uniform in 0..9, so a third of the
    operands are below 10 (``"8+4    "`` is common, unlike in :func:`make_addition`). Each
    problem appears once up to order (``3+5`` excludes ``5+3``): a draw seen before is
    redrawn. Problems drawn late are mostly long ones (the short ones are used up), so the
    pairs are shuffled before the caller splits them, as the textbook's ``load_data`` does;
    so ``make_addition_textbook(k, s)`` is *not* a prefix of ``(n, s)``. The question is
    padded with spaces to 7 characters and the answer to 4; the encoder reads the padding
    (at the end, or at the start when the source is reversed) and the decoder writes it.
    """
    if not 0 <= n <= TEXTBOOK_ADDITION_MAX:
        raise ValueError(f"n must be in 0..{TEXTBOOK_ADDITION_MAX}, got {n}")
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    pairs: list[Pair] = []
    while len(pairs) < n:
        a, b = _textbook_operand(rng), _textbook_operand(rng)
        if (key := (min(a, b), max(a, b))) in seen:
            continue
        seen.add(key)
        pairs.append((f"{a}+{b}".ljust(ADDITION_WIDTHS[0]), str(a + b).ljust(ADDITION_WIDTHS[1])))
    rng.shuffle(pairs)
    return pairs


def _textbook_operand(rng: random.Random) -> int:
    return int("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 3))))


def _unique(n: int, seed: int, sample: Callable[[random.Random], Pair], tries: int = 10) -> list[Pair]:
    """``n`` samples from ``random.Random(seed)``, redrawing a repeated source up to ``tries`` times.

    So sources are (nearly) unique while ``n`` is well below the number of possible sources
    (1M for addition, about 1M for dates), which keeps test pairs out of train; beyond that
    duplicates appear, as they must.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return list(itertools.islice(_iter_unique(seed, sample, tries), n))


def _iter_unique(seed: int, sample: Callable[[random.Random], Pair], tries: int = 10) -> Iterator[Pair]:
    """The endless sequence whose first ``n`` are ``_unique(n, ...)``. Its memory is the set of
    sources seen, bounded by the number of possible sources (about 1M), not by ``n``."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while True:
        for _ in range(tries):
            pair = sample(rng)
            if pair[0] not in seen:
                break
        seen.add(pair[0])
        yield pair


# the synthetic values of data.source, each with its maker
SYNTHETIC_SOURCES: dict[str, Callable[[int, int], list[Pair]]] = {"dates": make_dates, "addition": make_addition}


def _date_pair(rng: random.Random) -> Pair:
    d = datetime.date.fromordinal(rng.randint(_FIRST_DAY, _LAST_DAY))
    return rng.choice(_FORMATS)(d), d.isoformat()


def _addition_pair(rng: random.Random) -> Pair:
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    return f"{a}+{b}", str(a + b)


def stream(source: str, seed: int) -> Iterator[Pair]:
    """Unique ``dates`` or ``addition`` pairs, without end: the first ``n`` are those of
    :func:`make_dates` / :func:`make_addition` ``(n, seed)``."""
    return _iter_unique(seed, _date_pair if source == "dates" else _addition_pair)
