"""Dataset names, tag names, references (`team/geo-db:stable`) and agent ids, checked once at
the edge."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from aetherfs.errors import InvalidInput, echo

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9._-]*")
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# An agent's name at a hub (its status, its enrolment); the agent's config checks it too.
_AGENT_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# SemVer 2.0 core with an optional pre-release; build metadata is refused on purpose, since
# `1.0.0+a` and `1.0.0+b` would be two immutable tags with equal precedence.
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*)?"
)
# CalVer: YYYY.MM.DD with an optional same-day counter.
_CALVER = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})(\.(0|[1-9]\d*))?")
MAX_NAME = 200


def check_dataset_name(name: str) -> str:
    """Return `name` if it is a valid dataset name (`team/geo-db`), else raise InvalidInput."""
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"dataset name must be 1 to {MAX_NAME} characters: {echo(name)}")
    for segment in name.split("/"):
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise InvalidInput(
                f"bad dataset name {echo(name)}: each '/'-separated segment must be lower case "
                "letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
    return name


def check_agent_id(agent_id: str) -> str:
    if not _AGENT_ID.fullmatch(agent_id):
        raise InvalidInput(
            f"bad agent id {echo(agent_id)}: lower case letters, digits, '.', '_' or '-' "
            "(at most 128), starting with a letter or digit"
        )
    return agent_id


def is_version_tag(tag: str) -> bool:
    """True for SemVer (`1.4.2`, `1.4.2-rc.1`) and CalVer (`2026.11.24`, `2026.11.24.1`) tags."""
    calver = _CALVER.fullmatch(tag)
    if calver:
        return _real_date(calver) is not None
    return _SEMVER.fullmatch(tag) is not None


def _real_date(calver: re.Match[str]) -> datetime.date | None:
    """The day a CalVer tag names, or None when there is no such day (`2026.02.30`)."""
    try:
        return datetime.date(int(calver.group(1)), int(calver.group(2)), int(calver.group(3)))
    except ValueError:
        return None


def check_tag(tag: str) -> str:
    """Return `tag` if it is a version tag or a channel name, else raise InvalidInput."""
    if is_version_tag(tag):
        return tag
    if _CALVER.fullmatch(tag):
        raise InvalidInput(
            f"bad CalVer tag {echo(tag)}: YYYY.MM.DD must be a real date (month 01-12, a day that "
            "month has)"
        )
    if tag[:1] in ("v", "V") and is_version_tag(tag[1:]):
        # `v1.0.0` would otherwise be a channel: a name that moves, when a fixed one was meant.
        raise InvalidInput(
            f"bad tag {echo(tag)}: did you mean {tag[1:]}? Version tags have no 'v' prefix, and "
            "a channel may not look like a version"
        )
    if re.fullmatch(r"\d+(\.\d+)*(-.*)?", tag):
        raise InvalidInput(
            f"bad version tag {echo(tag)}: use SemVer (1.4.2, 1.4.2-rc.1) or CalVer "
            "(2026.11.24, 2026.11.24.1)"
        )
    if not _CHANNEL.fullmatch(tag):
        raise InvalidInput(
            f"bad tag {echo(tag)}: a channel is lower case letters, digits, '.', '_' or '-' "
            "(at most 128), starting with a letter or digit"
        )
    return tag


@dataclass(frozen=True, slots=True)
class Ref:
    """A dataset and one of its tags: `team/geo-db:stable`."""

    dataset: str
    tag: str

    @classmethod
    def parse(cls, text: str, default_tag: str | None = None) -> Ref:
        name, sep, tag = text.rpartition(":")
        if not sep:
            if default_tag is None:
                raise InvalidInput(f"expected NAME:TAG, got {echo(text)} (e.g. team/geo-db:stable)")
            name, tag = text, default_tag
        return cls(check_dataset_name(name), check_tag(tag))

    def __str__(self) -> str:
        return f"{self.dataset}:{self.tag}"
