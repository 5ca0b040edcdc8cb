"""The planner on a LAN with links (tests/planner/links.py): ten agents sharing one 12.5 MB/s
store, every host's link 12.5 MB/s each way. Each of these read every piece 2.6 to 10 times
before the planner measured the store's pace (docs/planner.md has the table)."""

from aetherfs.planner import PlannerConfig
from tests.planner.helpers import table_of
from tests.planner.links import LINK, LinkLan, spread

CONFIG = PlannerConfig(store_reads=4)  # the agent's fetch_workers on two cores
ALONE = 64 * 4 * 2**20 / LINK  # one agent alone reads a 256 MiB version in 21.5 s


def rollout(
    pieces: int = 64,
    agents: int = 10,
    starts: list[float] | None = None,
    config: PlannerConfig = CONFIG,
    **lan: object,
) -> LinkLan:
    model = LinkLan(table_of(pieces), agents, config=config, **lan)  # type: ignore[arg-type]
    model.start(starts)
    model.run()
    assert len(model.done_at) == agents
    return model


def test_ten_agents_starting_over_10_s_on_a_shared_store_read_each_piece_about_once() -> None:
    for reads in (4, 8):
        config = PlannerConfig(store_reads=reads)
        found = [rollout(starts=spread(10, 10.0, seed), config=config) for seed in (1, 2, 3)]
        mean = sum(lan.reads_per_piece() for lan in found) / len(found)
        assert mean <= 1.05, (reads, [lan.reads_per_piece() for lan in found])
        assert all(lan.reads_per_piece() <= 1.1 for lan in found)
        assert all(lan.last() < 2.5 * ALONE for lan in found)


def test_ten_agents_starting_over_30_s_read_each_piece_about_once() -> None:
    lan = rollout(starts=spread(10, 30.0))
    assert lan.reads_per_piece() <= 1.05, lan.store_reads


def test_ten_agents_starting_at_once_read_each_piece_once() -> None:
    lan = rollout()
    assert lan.reads_per_piece() == 1.0
    assert lan.last() < 2 * ALONE


def test_a_delta_of_two_pieces_is_read_once_however_the_agents_start() -> None:
    for starts in (None, spread(10, 10.0)):
        lan = rollout(pieces=2, starts=starts)
        assert lan.reads_per_piece() == 1.0, lan.store_reads


def test_a_silent_or_slow_peer_costs_its_share_once_more_not_every_agents() -> None:
    for lan in (rollout(agents=5, silent={1}), rollout(agents=5, uplink={1: 1e6})):
        # Its own reads, and once more by whoever takes its pieces (a fifth): not 4 times.
        assert lan.reads_per_piece() <= 1.35, lan.store_reads
        assert lan.last() < 2 * ALONE  # five agents each reading the store alone: 5 x ALONE


def test_twenty_agents_over_10_s_wait_their_turn_at_a_new_pieces_only_holder() -> None:
    lan = rollout(agents=20, starts=spread(20, 10.0))
    assert lan.reads_per_piece() <= 1.05, lan.store_reads  # 1.17 with deadlines blind to it
