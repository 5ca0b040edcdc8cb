"""The file server's pure parts: Range parsing, URL path checks, symlink joins."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aetherfs.errors import InvalidInput
from aetherfs.http.files import ByteRange, Unsatisfiable, check_url_path, join_link, parse_range


@given(size=st.integers(1, 10**9), a=st.integers(0, 2 * 10**9), b=st.integers(0, 2 * 10**9))
def test_ranges_stay_inside_the_file(size: int, a: int, b: int) -> None:
    try:
        got = parse_range(f"bytes={a}-{b}", size)
    except Unsatisfiable:
        assert a >= size and b >= a
        return
    if b < a:
        assert got is None
        return
    assert got is not None
    assert got.start == a and got.length > 0 and got.start + got.length <= size
    assert got.start + got.length - 1 == min(b, size - 1)


def test_range_forms() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=-3", 10) == ByteRange(7, 3)
    assert parse_range("bytes=-30", 10) == ByteRange(0, 10)
    assert parse_range("bytes=4-", 10) == ByteRange(4, 6)
    assert parse_range("bytes=-5", 0) is None  # an empty file: all of it, not `bytes 0--1/0`
    assert parse_range(" Bytes = 1-2", 10) == ByteRange(1, 2)  # the unit is case-insensitive
    for ignored in ("bytes=a-b", "bytes=1-2,3-4", "items=1-2", "bytes=", "bytes=--1"):
        assert parse_range(ignored, 10) is None, ignored
    for unsatisfiable in ("bytes=10-", "bytes=-0", "bytes=11-20"):
        with pytest.raises(Unsatisfiable):
            parse_range(unsatisfiable, 10)


def test_url_paths() -> None:
    assert check_url_path(b"/files/x/1.0.0/a/b", "a/b") == "a/b"
    assert check_url_path(b"/files/x/1.0.0/a/", "a/") == "a"
    assert check_url_path(b"/files/x/1.0.0/", "") == ""
    for raw, path in (
        (b"/a%2Fb", "a/b"),
        (b"/a%2fb", "a/b"),
        (b"/a%5cb", "a\\b"),
        (b"/a%00", "a\0"),
        (b"/a/../b", "a/../b"),
        (b"/./b", "./b"),
        (b"/a//b", "a//b"),
        (b"/..", ".."),
    ):
        with pytest.raises(InvalidInput):
            check_url_path(raw, path)


def test_symlink_joins() -> None:
    assert join_link("sub/link", "../big.bin") == "big.bin"
    assert join_link("link", "sub/./x") == "sub/x"
    assert join_link("link", "../outside") is None
    assert join_link("a/b/link", "../../..") is None
