import pytest

from aetherfs.core.names import Ref, check_dataset_name, check_tag, is_version_tag
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
