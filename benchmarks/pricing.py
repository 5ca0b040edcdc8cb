"""AWS S3 list prices (Standard, us-east-1) and the request classes they apply to."""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3


@dataclass(frozen=True, slots=True)
class Prices:
    """Dollars per request and per byte out. AWS bills a GB as 2^30 bytes."""

    put_per_1000: float = 0.005  # PUT, COPY, POST, LIST
    get_per_1000: float = 0.0004  # GET, HEAD and the rest
    egress_per_gb: float = 0.09  # data transfer out to the internet

    def cost(self, puts: int = 0, gets: int = 0, egress: int = 0) -> float:
        return (
            puts * self.put_per_1000 / 1000
            + gets * self.get_per_1000 / 1000
            + egress * self.egress_per_gb / GiB
        )


AWS = Prices()

# Request kinds (as the counting proxy names them) billed at the PUT rate; DELETE is free;
# everything else at the GET rate.
PUT_CLASS = frozenset({"PUT", "POST", "LIST", "COPY"})
FREE = frozenset({"DELETE"})


def split_requests(by_kind: dict[str, int]) -> tuple[int, int]:
    """(PUT-class requests, GET-class requests) from counts by kind."""
    puts = sum(n for kind, n in by_kind.items() if kind in PUT_CLASS)
    gets = sum(n for kind, n in by_kind.items() if kind not in PUT_CLASS and kind not in FREE)
    return puts, gets


def dollars(value: float) -> str:
    """A cost for a table: enough digits to compare tiny figures."""
    if value == 0:
        return "$0"
    if value < 0.0001:
        return f"${value:.7f}"
    if value < 0.01:
        return f"${value:.5f}"
    return f"${value:.4f}"
