"""Hypothesis generators of names a server must refuse: lone surrogates, bidi controls, zero-width-only
names, the BOM, line and paragraph separators, control characters and Windows device names (shared
by the hostile-input fuzz and the schema fuzz)."""

from __future__ import annotations

from hypothesis import strategies as st

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
BIDI = st.sampled_from(["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
                        "\u200e", "\u200f", "\u061c"])
SEPARATORS = st.sampled_from(["\ufeff", "\u2028", "\u2029"])
CONTROLS = st.sampled_from([chr(c) for c in (*range(0, 32), *range(127, 160))])
ZERO_WIDTH_ONLY = st.text(alphabet="\u200b\u200c\u200d\u2060", min_size=1, max_size=6)
RESERVED_WORDS = ["con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))]
PLAIN = st.text(alphabet="abcXYZ019 _-\u00e9\u2713", max_size=12)


@st.composite
def reserved_name(draw) -> str:
    word = "".join(c.upper() if draw(st.booleans()) else c for c in draw(st.sampled_from(RESERVED_WORDS)))
    ext = draw(st.sampled_from(["", ".txt", ".png", ".tar.gz", ".x"]))
    return word + ext


@st.composite
def with_inside(draw, bad) -> str:
    """`bad` somewhere in an otherwise plain name (start, middle or end)."""
    return draw(PLAIN).strip() + draw(bad) + draw(PLAIN).strip()


def hostile_name():
    """(kind, name): a name every endpoint refuses with 400 invalid_name."""
    return st.one_of(
        st.tuples(st.just("surrogate"), with_inside(SURROGATES)),
        st.tuples(st.just("bidi"), with_inside(BIDI)),
        st.tuples(st.just("separator/BOM"), with_inside(SEPARATORS)),
        st.tuples(st.just("control"), with_inside(CONTROLS)),
        st.tuples(st.just("zero-width only"), ZERO_WIDTH_ONLY),
        st.tuples(st.just("reserved"), reserved_name()),
    )
