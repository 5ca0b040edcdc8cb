"""The agent's identity key: made 0600 on first start, reused after, refused when others may
read it or it is damaged; the agent id derived from it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from aetherfs.agent.identity import AgentId, IdentityError, identity_path, load_identity
from aetherfs.agent.private_file import PrivateFileError, write_private
from aetherfs.hub.layout import check_agent_id


def test_created_0600_even_with_an_open_umask_and_reused(tmp_path: Path) -> None:
    state = tmp_path / ".agent"
    old = os.umask(0)
    try:
        first = load_identity(state)
    finally:
        os.umask(old)
    path = identity_path(state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in state.iterdir()) == ["identity.key"]  # no temporary left
    again = load_identity(state)
    assert again.public_key == first.public_key and again.agent_id == first.agent_id
    # Another user, with every capability dropped, cannot read it.
    os.chmod(tmp_path, 0o755)  # let the other user reach the file: only its mode protects it
    os.chmod(state, 0o755)
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "cat",
            str(path),
        ],
        capture_output=True,
    )
    assert done.returncode != 0 and b"Permission denied" in done.stderr
    assert done.stdout == b""


def test_no_start_without_create(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no agent identity"):
        load_identity(tmp_path, create=False)
    assert not identity_path(tmp_path).exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refused_when_others_may_read_it(tmp_path: Path, mode: int) -> None:
    made = load_identity(tmp_path)
    os.chmod(made.path, mode)
    with pytest.raises(PrivateFileError, match=f"mode {mode:04o}.*chmod 600"):
        load_identity(tmp_path)
    assert stat.S_IMODE(made.path.stat().st_mode) == mode  # left as it was, not replaced


def test_refused_when_a_symlink(tmp_path: Path) -> None:
    elsewhere = load_identity(tmp_path / "other")
    state = tmp_path / "state"
    state.mkdir()
    identity_path(state).symlink_to(elsewhere.path)
    with pytest.raises(PrivateFileError, match="plain file"):
        load_identity(state)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json\n",
        b'{"v": 1, "kind": "aetherfs-agent-identity", "seed": "00"}',
        b'{"v": 1, "kind": "aetherfs-agent-identity", "seed": "zz"}',
        b'{"v": 1, "kind": "aetherfs-agent-identity"}',
        b'{"v": 1, "kind": "keyring", "seed": "' + b"00" * 32 + b'"}',
        b"[1, 2]",
    ],
)
def test_refused_when_malformed(tmp_path: Path, content: bytes) -> None:
    write_private(identity_path(tmp_path), content)
    with pytest.raises(IdentityError, match=r"is not an agent identity key.*delete it"):
        load_identity(tmp_path)
    assert identity_path(tmp_path).read_bytes() == content  # never silently replaced


def test_refused_when_of_a_newer_format(tmp_path: Path) -> None:
    doc = {"v": 2, "kind": "aetherfs-agent-identity", "seed": "00" * 32}
    write_private(identity_path(tmp_path), json.dumps(doc).encode())
    with pytest.raises(IdentityError, match=r"format 2.*upgrade the agent"):
        load_identity(tmp_path)


def test_write_private_without_replace_keeps_the_first(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert write_private(path, b"first", replace=False)
    assert not write_private(path, b"second", replace=False)
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_agent_id_is_short_stable_and_printable() -> None:
    key = bytes(SigningKey(b"\1" * 32).verify_key)
    agent_id = AgentId.of(key)
    assert agent_id == AgentId.of(key)
    assert len(str(agent_id)) == 16 and str(agent_id).isalnum() and str(agent_id).islower()
    check_agent_id(str(agent_id))  # usable as the name the agent enrols under
    assert AgentId.of(bytes(SigningKey(b"\2" * 32).verify_key)) != agent_id
    ids = {AgentId.of(bytes(SigningKey.generate().verify_key)) for _ in range(200)}
    assert len(ids) == 200
