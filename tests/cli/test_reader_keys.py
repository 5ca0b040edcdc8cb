"""A reader's keyring (`aetherfs keys export --reader`): every reader command works with it,
nothing that writes does, and it holds no secret that opens or writes the rest of the store."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from aetherfs.core import crypto
from aetherfs.errors import KeyringError
from aetherfs.keys import ReaderKeyring, load_keyring
from tests.agent.conftest import AgentProcess
from tests.cli.test_push_pull import make_tree, tree
from tests.conftest import Cli
from tests.fixtures.seaweedfs import SeaweedFS


def _writer_keyring(cli: Cli) -> Path:
    (found,) = (cli.home / "config" / "aetherfs" / "keys").glob("*.json")
    return found


def _publish(cli: Cli, tmp_path: Path) -> tuple[Path, Path]:
    """team/geo 1.0.0 and 1.1.0 (`stable`), and a second dataset `secret`; geo's two trees."""
    v1, v2, other = tmp_path / "v1", tmp_path / "v2", tmp_path / "other"
    make_tree(v1, seed=1, big=300_000)
    make_tree(v2, seed=1, big=300_000)
    (v2 / "sub/table.csv").write_text("changed\n")
    make_tree(other, seed=9, big=1000)
    cli("push", str(v1), "team/geo:1.0.0")
    cli("push", str(v2), "team/geo:1.1.0", "--tag", "stable")
    cli("push", str(other), "secret:1.0.0")
    return v1, v2


def _reader_cli(cli: Cli, tmp_path: Path) -> Cli:
    """Another user of the same store, with no keyring of their own."""
    home = tmp_path / "reader-home"
    home.mkdir()
    env = dict(cli.env)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_DATA_HOME=str(home / "data"),
    )
    return Cli(env, home)


def _check_reader_commands(reader: Cli, keys: Path, v1: Path, v2: Path, out: Path) -> None:
    k = ["--keys", str(keys)]
    reader("pull", "team/geo:1.0.0", str(out), *k)
    assert tree(out) == tree(v1)
    reader("pull", "team/geo:stable", str(out), *k)
    assert tree(out) == tree(v2)
    assert json.loads(reader("inspect", "team/geo:1.0.0", "--json", *k).out)["total_files"] > 0
    changes = json.loads(reader("diff", "team/geo:1.0.0", "team/geo:1.1.0", "--json", *k).out)
    assert [c["path"] for c in changes["changes"]] == ["sub/table.csv"]
    history = json.loads(reader("tags", "team/geo", "--history", "--json", *k).out)
    assert set(history) == {"1.0.0", "1.1.0", "stable", "latest"}
    assert len(history["latest"]) == 2
    names = {d["dataset"] for d in json.loads(reader("ls", "--json", *k).out)}
    assert names == {"team/geo", "secret"}
    info = json.loads(reader("keys", "--json", *k).out)
    assert info["kind"] == "reader" and info["datasets"] == ["team/geo"]

    # A dataset it was not given: a clear error naming it, and nothing written.
    secret_out = out.parent / "secret-out"
    refused = reader("pull", "secret:1.0.0", str(secret_out), *k, check=False)
    assert refused.code == 8, refused.err
    assert "no key for the dataset secret" in refused.err and "Traceback" not in refused.err
    assert not secret_out.exists()
    assert reader("inspect", "secret:1.0.0", *k, check=False).code == 8

    # Writing commands are refused in words, before they write.
    for args in (
        ["push", str(v1), "team/geo:9.9.9"],
        ["tag", "team/geo:1.0.0", "moved"],
        ["gc", "--dry-run"],
    ):
        result = reader(*args, *k, check=False)
        assert result.code == 8, (args, result.err)
        assert "Traceback" not in result.err
    tags = json.loads(reader("tags", "team/geo", "--json", *k).out)
    assert "9.9.9" not in tags and "moved" not in tags


def test_reader_keyring_local_every_reader_command_and_the_agent(cli: Cli, tmp_path: Path) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    v1, v2 = _publish(cli, tmp_path)
    keys = tmp_path / "reader.json"
    done = json.loads(
        cli("keys", "export", "--reader", str(keys), "--dataset", "team/geo", "--json").out
    )
    assert done["datasets"] == ["team/geo"]
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600

    reader = _reader_cli(cli, tmp_path)
    _check_reader_commands(reader, keys, v1, v2, tmp_path / "out")
    push_refused = reader("push", str(v1), "team/geo:9.9.9", "--keys", str(keys), check=False)
    assert "needs the producer's keyring" in push_refused.err
    assert "a reader's keyring" in push_refused.err

    # The agent, with only the reader's keyring, keeps team/geo:stable live.
    stable = json.loads(reader("tags", "team/geo", "--json", "--keys", str(keys)).out)["stable"]
    agent = AgentProcess(
        reader,
        tmp_path / "agent-root",
        ["--keys", str(keys), "--subscribe", "team/geo:stable", "--poll-interval", "0.2"],
        tmp_path / "agent.log",
    )
    try:
        agent.start()
        agent.wait_live("team/geo:stable", stable[0]["manifest"])
        # The agent's files are read-only (a write must not reach another version).
        read_only = {
            path: (kind, mode & ~0o222 if kind == "f" else mode, body)
            for path, (kind, mode, body) in tree(v2).items()
        }
        assert tree(tmp_path / "agent-root/team/geo/stable") == read_only
    finally:
        agent.close()


def test_reader_keyring_seaweedfs(cli: Cli, tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    cli.env["AETHERFS_STORE"] = seaweedfs.store_url()
    cli.env["AETHERFS_S3_ENDPOINT"] = seaweedfs.endpoint
    v1, v2 = _publish(cli, tmp_path)
    keys = tmp_path / "reader.json"
    cli("keys", "export", "--reader", str(keys), "--dataset", "team/geo")
    _check_reader_commands(_reader_cli(cli, tmp_path), keys, v1, v2, tmp_path / "out")


def test_reader_keyring_holds_no_writer_secret(cli: Cli, tmp_path: Path) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    _publish(cli, tmp_path)
    keys = tmp_path / "reader.json"
    cli("keys", "export", "--reader", str(keys))  # every dataset of the store by default
    writer = load_keyring(_writer_keyring(cli))
    assert writer.signing_seed is not None
    text = keys.read_text()
    for secret in (writer.master, writer.convergence_secret, writer.signing_seed):
        assert secret.hex() not in text
    reader = load_keyring(keys)
    assert isinstance(reader, ReaderKeyring)
    assert sorted(reader.dataset_keys) == ["secret", "team/geo"]
    assert reader.dataset_key("secret") == writer.dataset_key("secret")
    assert reader.fleet_secret == writer.fleet_secret
    assert writer.fleet_secret == crypto.derive_key(writer.master, "fleet secret")
    assert writer.fleet_secret not in (writer.master, writer.dataset_key("secret"))
    assert writer.signer_public in reader.trusted
    assert reader.key_check == writer.key_check
    with pytest.raises(KeyringError, match="no master secret"):
        _ = reader.master
    with pytest.raises(KeyringError, match="cannot seal blocks"):
        _ = reader.convergence_secret
    with pytest.raises(KeyringError, match="cannot sign"):
        _ = reader.signing_key

    # A reader may pass on a part of what it holds, never more.
    part = tmp_path / "part.json"
    cli("keys", "export", "--reader", str(part), "--dataset", "secret", "--keys", str(keys))
    assert sorted(load_keyring(part).dataset_keys) == ["secret"]  # type: ignore[attr-defined]


def test_export_never_overwrites_and_refuses_unknown_datasets(cli: Cli, tmp_path: Path) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    _publish(cli, tmp_path)
    writer_file = _writer_keyring(cli)
    before = writer_file.read_bytes()
    again = cli("keys", "export", "--reader", str(writer_file), check=False)
    assert again.code == 8 and "exists" in again.err
    assert writer_file.read_bytes() == before

    target = tmp_path / "x.json"
    typo = cli("keys", "export", "--reader", str(target), "--dataset", "team/gep", check=False)
    assert typo.code == 3 and "no dataset team/gep" in typo.err
    assert not target.exists()


def test_todays_keyring_format_keeps_working(cli: Cli, tmp_path: Path) -> None:
    """A keyring file as every release so far wrote it, byte for byte in shape."""
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    v1, _ = _publish(cli, tmp_path)
    writer = load_keyring(_writer_keyring(cli))
    assert writer.signing_seed is not None
    old = tmp_path / "old.json"
    old.write_text(
        json.dumps(
            {
                "format": 1,
                "store_id": writer.store_id,
                "master": writer.master.hex(),
                "signing_seed": writer.signing_seed.hex(),
                "trusted_signers": [],
            },
            indent=2,
        )
    )
    old.chmod(0o600)
    cli("pull", "team/geo:1.0.0", str(tmp_path / "out"), "--keys", str(old))
    assert tree(tmp_path / "out") == tree(v1)
    cli("push", str(v1), "team/geo:2.0.0", "--keys", str(old))
    cli("keys", "export", "--reader", str(tmp_path / "r.json"), "--keys", str(old))

    # Yesterday's "reader" (the master without the signing seed) still reads, cannot tag.
    no_seed = json.loads(old.read_text())
    no_seed["signing_seed"] = None
    no_seed["trusted_signers"] = [(writer.signer_public or b"").hex()]
    old.write_text(json.dumps(no_seed))
    cli("inspect", "team/geo:2.0.0", "--keys", str(old))
    assert cli("tag", "team/geo:2.0.0", "x", "--keys", str(old), check=False).code == 8


def test_keyring_readable_by_others_warns(cli: Cli, tmp_path: Path) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    _publish(cli, tmp_path)
    path = _writer_keyring(cli)
    assert "warning" not in cli("ls").err
    path.chmod(0o644)
    result = cli("ls")
    assert "can be read by other users (mode 0644)" in result.err
    assert f"chmod 600 {path}" in result.err
    assert result.err.count("\n") == 1


@pytest.mark.parametrize(
    ("doc", "said"),
    [
        ("[1, 2]", "it is not a JSON object"),
        ("{not json", "it is not JSON"),
        ('{"store_id": "x"}', "it says nothing of its format"),
        ('{"format": 7}', "keyring format 7 is not supported"),
        ('{"format": 1, "master": "00"}', "the id of its store is missing"),
        ('{"format": 1, "store_id": "x"}', "its master secret is missing"),
        ('{"format": 1, "store_id": "x", "master": "zz"}', "its master secret is not 32 bytes"),
        ('{"format": 2, "kind": "reader", "store_id": "x"}', "its dataset keys are missing"),
    ],
)
def test_keyring_errors_say_what_is_missing(tmp_path: Path, doc: str, said: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(doc)
    with pytest.raises(KeyringError) as raised:
        load_keyring(bad)
    message = str(raised.value)
    assert said in message
    assert "'" not in message  # no key name or repr leaks out


def test_a_malformed_keyring_is_one_line_naming_the_problem(cli: Cli, tmp_path: Path) -> None:
    cli.env["AETHERFS_STORE"] = (tmp_path / "store").as_uri()
    src = tmp_path / "src"
    make_tree(src, big=1000)
    cli("push", str(src), "geo:1.0.0")
    bad = tmp_path / "bad.json"
    bad.write_text('{"store_id": "x", "master": "00"}')
    bad.chmod(0o600)
    result = cli("ls", "--keys", str(bad), check=False)
    assert result.code == 8
    assert result.err == (
        f"aetherfs: error: {bad} is not a keyring: it says nothing of its format\n"
    )
