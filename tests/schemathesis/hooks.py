"""Schemathesis hooks for offpeak's API (loaded by tests/tests/api/schemathesis.rs).

The document gives a schedule's `cron` the format `cron`: JSON Schema cannot
state a cron grammar, so without a generator for the format schemathesis
would send arbitrary strings as "valid" expressions and count the API's 422
`invalid_cron` against it. This strategy draws expressions the `cron` crate
parses (the forms README's schedules section describes: 5 or 6 fields, or an
`@` shorthand; lists, ranges, steps, month and weekday names). Day of month
stays within 1-28, so every drawn expression fires again (a `30` in February
alone never would, which the API refuses with a 422 of its own). Negative
testing is unaffected: schemathesis does not invent values that break an
unknown format.
"""

from hypothesis import strategies as st

import schemathesis

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def field(low, high, names=None):
    """One field whose values run from `low` to `high` (names, if given, spell them in order)."""
    value = st.integers(low, high)
    spelled = value.map(str) if names is None else st.one_of(value.map(str), value.map(lambda v: names[v - low]))
    ordered = st.tuples(value, value).map(sorted)
    return st.one_of(
        st.just("*"),
        spelled,
        ordered.map(lambda r: f"{r[0]}-{r[1]}"),
        st.integers(1, max(1, (high - low) // 2)).map(lambda step: f"*/{step}"),
        st.tuples(value, st.integers(1, max(1, (high - low) // 2))).map(lambda p: f"{p[0]}/{p[1]}"),
        st.lists(value, min_size=2, max_size=4, unique=True).map(lambda vs: ",".join(map(str, sorted(vs)))),
    )


FIVE = st.tuples(field(0, 59), field(0, 23), field(1, 28), field(1, 12, MONTHS), field(1, 7, WEEKDAYS)).map(" ".join)
SIX = st.tuples(field(0, 59), FIVE).map(" ".join)
SHORTHAND = st.sampled_from(["@yearly", "@monthly", "@weekly", "@daily", "@hourly"])

schemathesis.openapi.format("cron", st.one_of(FIVE, SIX, SHORTHAND))
