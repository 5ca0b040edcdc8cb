"""Sizes as the CLI and the hub's pages print them: binary units, one decimal."""

from __future__ import annotations

import pytest

from aetherfs.cli.output import human_bytes
from aetherfs.hub import web


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 Bytes"), (512, "512 Bytes"), (1536, "1.5 KiB"), (3 * 2**30, "3.0 GiB")],
)
def test_sizes_read_the_same_in_the_cli_and_on_the_pages(size: int, text: str) -> None:
    assert human_bytes(size) == text
    assert web.human_bytes(size) == text
