"""A store URL with a typo: reading commands never create a store and say that none is
there; only a push creates one, and says so on one line."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests.cli.test_push_pull import make_tree
from tests.conftest import Cli
from tests.fixtures.seaweedfs import CREDENTIALS, SeaweedFS

READ_COMMANDS = [
    ["ls"],
    ["tags", "geo"],
    ["inspect", "geo:1.0.0"],
    ["diff", "geo:1.0.0", "geo:1.0.1"],
    ["pull", "geo:1.0.0", "{out}"],
    ["keys"],
    ["gc", "--dry-run"],
    ["tag", "geo:1.0.0", "stable"],
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: a[0])
def test_missing_local_store_is_an_error_and_is_not_created(
    cli: Cli, tmp_path: Path, args: list[str]
) -> None:
    missing = tmp_path / "nonexistent"
    out = tmp_path / "out"
    result = cli(*(a.format(out=out) for a in args), "--store", missing.as_uri(), check=False)
    assert result.code == 3, result.err
    assert f"there is no AetherFS store at {missing.as_uri()}" in result.err
    assert "check the URL" in result.err and "Traceback" not in result.err
    assert not missing.exists() and not out.exists()


def test_an_existing_directory_that_is_no_store_is_left_alone(cli: Cli, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    result = cli("ls", "--store", plain.as_uri(), check=False)
    assert result.code == 3 and "there is no AetherFS store" in result.err
    assert list(plain.iterdir()) == []


def test_only_push_creates_a_store_and_says_so(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    store = (tmp_path / "new-store").as_uri()
    first = cli("push", str(src), "geo:1.0.0", "--store", store)
    created = [line for line in first.err.splitlines() if "created a new store" in line]
    assert len(created) == 1 and store in created[0]
    second = cli("push", str(src), "geo:1.0.1", "--store", store)
    assert "created" not in second.err
    assert "geo" in cli("ls", "--store", store).out


def _client(seaweedfs: SeaweedFS) -> object:
    return boto3.client(
        "s3",
        endpoint_url=seaweedfs.endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def test_mistyped_s3_prefix_and_bucket(cli: Cli, tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    cli.env["AETHERFS_S3_ENDPOINT"] = seaweedfs.endpoint
    src = tmp_path / "src"
    make_tree(src, big=1000)
    prefix = seaweedfs.new_prefix()
    url = f"s3://{seaweedfs.bucket}/{prefix}"
    first = cli("push", str(src), "geo:1.0.0", "--store", url)
    assert first.err.count("created a new store") == 1

    typo = f"s3://{seaweedfs.bucket}/{prefix}x"
    for args in (["ls"], ["tags", "geo"], ["pull", "geo:1.0.0", str(tmp_path / "out")]):
        result = cli(*args, "--store", typo, check=False)
        assert result.code == 3, result.err
        assert f"there is no AetherFS store at {typo}/" in result.err
        assert "no datasets yet" not in result.out
    listed = _client(seaweedfs).list_objects_v2(  # type: ignore[attr-defined]
        Bucket=seaweedfs.bucket, Prefix=f"{prefix}x"
    )
    assert listed.get("KeyCount", 0) == 0  # nothing was written under the typo

    no_bucket = cli("ls", "--store", "s3://no-such-bucket-here/x", check=False)
    assert no_bucket.code == 7 and "the bucket no-such-bucket-here of the store" in no_bucket.err
    assert "does not exist: check the URL" in no_bucket.err
    assert "geo" in cli("ls", "--store", url).out


def test_a_damaged_store_info_says_so_in_words(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=1000)
    store = tmp_path / "store"
    cli("push", str(src), "geo:1.0.0", "--store", store.as_uri())
    (store / "aetherfs.json").write_text('{"format": 1, "store_id": "x"}')
    result = cli("ls", "--store", store.as_uri(), check=False)
    assert result.code == 5
    assert "aetherfs.json is malformed (it must name the store's id" in result.err
    assert "'" not in result.err.replace("store's", "")
