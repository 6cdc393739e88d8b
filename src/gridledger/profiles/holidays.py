"""Mexico's statutory rest days, which the BDEW profiles treat as Sundays.

The days of Ley Federal del Trabajo, art. 74: 1 January, the first Monday of February, the third Monday of March,
1 May, 16 September, the third Monday of November, 25 December, and the day a new president takes office (every
six years: 1 December up to 2018, 1 October from 2024).
"""

from __future__ import annotations

import datetime as dt


def _nth_monday(year: int, month: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(7 - first.weekday()) % 7 + 7 * (n - 1))


def mexican_holidays(year: int) -> list[dt.date]:
    """Statutory rest days of ``year`` (LFT art. 74), in date order."""
    days = [
        dt.date(year, 1, 1),
        _nth_monday(year, 2, 1),
        _nth_monday(year, 3, 3),
        dt.date(year, 5, 1),
        dt.date(year, 9, 16),
        _nth_monday(year, 11, 3),
        dt.date(year, 12, 25),
    ]
    if year >= 2024 and (year - 2024) % 6 == 0:
        days.append(dt.date(year, 10, 1))
    elif year <= 2018 and (2018 - year) % 6 == 0:
        days.append(dt.date(year, 12, 1))
    return sorted(days)
