"""What the fuzz tests share: bodies with some of their bytes overwritten."""

from __future__ import annotations

from hypothesis import strategies as st


def flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    """``data`` with the byte at each position (wrapping around its length) set to the value."""
    mutable = bytearray(data)
    for position, value in flips:
        if mutable:
            mutable[position % len(mutable)] = value
    return bytes(mutable)


def with_flipped_bytes(
    bodies: st.SearchStrategy[bytes], *, reach: int, min_flips: int = 0
) -> st.SearchStrategy[bytes]:
    """``bodies`` with up to four bytes overwritten, at positions up to ``reach``."""
    flips = st.lists(st.tuples(st.integers(0, reach), st.integers(0, 255)), min_size=min_flips, max_size=4)
    return st.tuples(bodies, flips).map(lambda pair: flip(*pair))
