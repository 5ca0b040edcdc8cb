import re

import pytest

from aetherfs.core.names import Ref, check_agent_id, check_dataset_name, check_tag, is_version_tag
from aetherfs.errors import InvalidInput


@pytest.mark.parametrize("tag", ["1.4.2", "1.4.2-rc.1", "0.0.1", "2026.11.24", "2026.11.24.1"])
def test_version_tags(tag: str) -> None:
    assert is_version_tag(tag)
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["latest", "stable", "canary", "eu-west.2"])
def test_channels(tag: str) -> None:
    assert not is_version_tag(tag)
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "Latest", "../x", "a b", "1.2", "01.2.3", "2026.13.01", "-x"])
def test_bad_tags(tag: str) -> None:
    with pytest.raises(InvalidInput):
        check_tag(tag)


@pytest.mark.parametrize("name", ["team/geo-db", "geo", "a.b/c_d/e-f"])
def test_dataset_names(name: str) -> None:
    assert check_dataset_name(name) == name


@pytest.mark.parametrize("name", ["", "/geo", "geo/", "Team/geo", "a/../b", "a//b", "a/.", "x y"])
def test_bad_dataset_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_dataset_name(name)


def test_ref_parse() -> None:
    assert Ref.parse("team/geo-db:stable") == Ref("team/geo-db", "stable")
    with pytest.raises(InvalidInput, match="NAME:TAG"):
        Ref.parse("team/geo-db")


@pytest.mark.parametrize(
    ("tag", "meant"),
    [("v1.0.0", "1.0.0"), ("V2.1.3-rc.1", "2.1.3-rc.1"), ("v2026.11.24", "2026.11.24")],
)
def test_v_prefixed_version_is_not_a_channel(tag: str, meant: str) -> None:
    with pytest.raises(InvalidInput, match=f"did you mean {re.escape(meant)}\\?"):
        check_tag(tag)


def test_v_channels_that_are_no_version_stay_channels() -> None:
    assert check_tag("v2") == "v2"
    assert check_tag("vnext") == "vnext"


@pytest.mark.parametrize(
    "tag", ["2026.02.30", "2025.02.29", "2026.04.31", "2026.00.10", "2026.02.30.1"]
)
def test_calver_must_be_a_real_date(tag: str) -> None:
    assert not is_version_tag(tag)
    with pytest.raises(InvalidInput, match="real date"):
        check_tag(tag)


def test_calver_leap_day_is_a_date() -> None:
    assert check_tag("2028.02.29") == "2028.02.29"


@pytest.mark.parametrize("agent_id", ["web-01", "a", "host.lan_2", "x" * 128])
def test_agent_ids(agent_id: str) -> None:
    assert check_agent_id(agent_id) == agent_id


@pytest.mark.parametrize("agent_id", ["", "Web-01", "-web", "a/b", "x" * 129])
def test_bad_agent_ids(agent_id: str) -> None:
    with pytest.raises(InvalidInput, match="bad agent id"):
        check_agent_id(agent_id)
