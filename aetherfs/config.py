"""Settings parsed once at the edge (flags, environment) and passed down as frozen values.

Follows the XDG base directories: keys under XDG_CONFIG_HOME, the block cache under
XDG_CACHE_HOME, the default embedded store under XDG_DATA_HOME, and what the CLI must remember
between runs under XDG_STATE_HOME, each part in its own subdirectory: `trust/` for the tag
records this user has come to trust (aetherfs/trust.py), `pulls/` for what pull wrote,
`pushes/` for what interrupted pushes uploaded (aetherfs/ops/push_journal.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _xdg(env: Mapping[str, str], name: str, fallback: str) -> Path:
    value = env.get(name, "")
    # The spec says relative values are invalid and must be ignored.
    if value and Path(value).is_absolute():
        return Path(value)
    return Path(env.get("HOME", str(Path.home()))) / fallback


@dataclass(frozen=True, slots=True)
class Settings:
    store_url: str
    s3_endpoint: str | None
    s3_region: str | None
    keys_path: Path | None  # one keyring file given explicitly
    keys_dir: Path  # where keyrings are found by store id
    cache_dir: Path
    manifest_cache_dir: Path
    cache_limit: int  # bytes
    state_dir: Path  # XDG_STATE_HOME/aetherfs: state that must outlive a cache wipe

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        store: str | None = None,
        keys: str | None = None,
        cache_limit: int | None = None,
    ) -> Settings:
        config_home = _xdg(env, "XDG_CONFIG_HOME", ".config") / "aetherfs"
        data_home = _xdg(env, "XDG_DATA_HOME", ".local/share") / "aetherfs"
        cache_home = _xdg(env, "XDG_CACHE_HOME", ".cache") / "aetherfs"
        state_home = _xdg(env, "XDG_STATE_HOME", ".local/state") / "aetherfs"
        store_url = store or env.get("AETHERFS_STORE") or (data_home / "store").as_uri()
        keys = keys or env.get("AETHERFS_KEYS")
        limit = cache_limit if cache_limit is not None else env.get("AETHERFS_CACHE_LIMIT")
        return cls(
            store_url=store_url,
            s3_endpoint=env.get("AETHERFS_S3_ENDPOINT") or None,
            s3_region=env.get("AETHERFS_S3_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            keys_path=Path(keys).expanduser() if keys else None,
            keys_dir=config_home / "keys",
            cache_dir=cache_home / "blocks",
            manifest_cache_dir=cache_home / "manifests",
            cache_limit=parse_size(str(limit)) if limit is not None else 4 * 1024**3,
            state_dir=state_home,
        )


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """`4G`, `512M`, `1048576`, `2GiB` -> bytes."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = cleaned[-1:] if cleaned[-1:] in _UNITS and cleaned[-1:] else ""
    number = cleaned[: -len(unit)] if unit else cleaned
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. 512M, 4G)") from None
    if value < 0:
        raise ValueError(f"a size cannot be negative: {text!r}")
    return int(value)
