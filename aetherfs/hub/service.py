"""The hub's operations, one method each, shared by REST and gRPC: checks, then the store.

Every method takes the calling Principal (None: anonymous), checks its role on the dataset
before touching anything, and blocks on the store: async callers run it in a thread.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

from aetherfs.core.ids import ManifestId, PackId
from aetherfs.core.manifest import Manifest
from aetherfs.core.names import check_dataset_name, check_tag
from aetherfs.core.tags import SignedTag, TagHistory, TagScan
from aetherfs.errors import Forbidden, IntegrityError, InvalidInput, NotFound, echo
from aetherfs.hub import layout as hub_layout
from aetherfs.hub import models, peers, rollout
from aetherfs.hub.acl import AclStore, check_subject
from aetherfs.hub.audit import AuditLog
from aetherfs.hub.auth import Principal, TokenRegistry
from aetherfs.hub.caches import Lru, ManifestCache, PackScope
from aetherfs.hub.enrol import Enrolment
from aetherfs.hub.errors import Unauthenticated
from aetherfs.hub.models import Tag
from aetherfs.ops import compare
from aetherfs.repository import StoreRepository
from aetherfs.store import layout

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _no_such_pack(dataset: str, pack_id: PackId) -> NotFound:
    return NotFound(
        f"pack {pack_id.short()} is not a stored pack of {dataset}: only packs that "
        "manifests named by its tags use are served through its path"
    )


def _need_login(principal: Principal | None) -> Principal:
    if principal is None:
        raise Unauthenticated("authentication required: send `Authorization: Bearer TOKEN`")
    return principal


class HubService:
    def __init__(
        self,
        repo: StoreRepository,
        acl_cache_seconds: float = 0.0,
        tag_cache_seconds: float = 0.0,
        pack_scope_seconds: float = 30.0,
        cert_lifetime: float = 30 * 86400.0,
    ) -> None:
        self.repo = repo
        self.store = repo.store
        self.tokens = TokenRegistry(repo.store)
        self.acls = AclStore(repo.store, acl_cache_seconds)
        self.audit = AuditLog(repo.store)
        self.enrolment = Enrolment(repo, cert_lifetime)
        self.peers = peers.PeerTable(repo.store, lambda: self.enrolment.revocations()[0].serials)
        # Opened manifests (immutable); tag heads and existing datasets for the file server
        # (short-lived; this hub's own moves replace them at once); each dataset's packs.
        self.manifests = ManifestCache(repo.get_manifest)
        self._heads: Lru[tuple[str, str], SignedTag] = Lru(1024, tag_cache_seconds)
        self._existing: Lru[str, bool] = Lru(1024, tag_cache_seconds)
        # A damaged tag lends no pack; the dataset's other tags still do.
        self.packs = PackScope(self._good_tags, self.manifests, pack_scope_seconds)

    def _good_tags(self, dataset: str) -> dict[str, TagHistory]:
        return self.repo.scan_tags(dataset).histories

    # Access -------------------------------------------------------------------------------
    def require(self, principal: Principal | None, dataset: str, role: str) -> None:
        check_dataset_name(dataset)
        if not self.acls.allowed(principal, dataset, role):
            _need_login(principal)  # anonymous: 401 (log in), not 403
            self.acls.require(principal, dataset, role)

    def require_admin(self, principal: Principal | None) -> Principal:
        who = _need_login(principal)
        if not who.admin:
            raise Forbidden("not allowed: this needs a hub admin")
        return who

    def info(self) -> models.Info:
        keyring = self.repo.keyring
        return models.Info(
            store_id=keyring.store_id,
            signer=(keyring.signer_public or b"").hex(),
            trusted_signers=[k.hex() for k in keyring.trusted],
        )

    # Datasets -----------------------------------------------------------------------------
    def dataset_exists(self, dataset: str, cached: bool = False) -> bool:
        """`cached`: an answer up to `tag_cache_seconds` old will do (the file server's)."""
        if cached:
            known = self._existing.get(dataset)
            if known is not None:
                return known
        exists = self.repo.dataset_exists(dataset)
        self._existing.put(dataset, exists)
        return exists

    def list_datasets(self, principal: Principal | None) -> list[models.DatasetSummary]:
        found = []
        for name in self.repo.list_datasets():
            if not self.acls.allowed(principal, name, "read"):
                continue
            scan = self.repo.scan_tags(name)  # a damaged tag hides neither the others nor it
            tags = scan.histories
            found.append(
                models.DatasetSummary(
                    name=name,
                    tags={t: h.current.record.manifest_id.hex() for t, h in sorted(tags.items())},
                    updated=max((h.current.record.time for h in tags.values()), default=None),
                    damaged=sorted(scan.damaged),
                )
            )
        return found

    def get_dataset(self, principal: Principal | None, dataset: str) -> models.Dataset:
        self.require(principal, dataset, "read")
        meta = self.repo.dataset_info(dataset)
        listing = self._listing(self.repo.scan_tags(dataset))
        return models.Dataset(
            name=dataset, created=meta.created, tags=listing.tags, damaged=listing.damaged
        )

    def create_dataset(self, principal: Principal | None, dataset: str) -> models.DatasetName:
        who = self.require_admin(principal)
        self.repo.create_dataset(dataset)  # Conflict if it exists
        self._existing.put(dataset, True)
        self.acls.set(dataset, who.subject, "admin")
        self.audit.record(who, "dataset.create", dataset)
        return models.DatasetName(name=dataset)

    def delete_dataset(self, principal: Principal | None, dataset: str) -> None:
        """Forget the dataset's tags, metadata and grants (blocks and manifests stay)."""
        self.require(principal, dataset, "admin")
        self.repo.delete_dataset(dataset)  # NotFound if it does not exist
        for key in list(self.store.list(hub_layout.uploads_prefix(dataset))):
            self.store.delete(key)
        self.acls.drop(dataset)
        self._existing.put(dataset, False)
        self._heads.drop(lambda key: key[0] == dataset)
        self.packs.drop(dataset)
        self.audit.record(principal, "dataset.delete", dataset)

    # Tags ---------------------------------------------------------------------------------
    def list_tags(self, principal: Principal | None, dataset: str) -> models.TagListing:
        """The current record of every tag that verifies, and why each other one does not:
        a damaged tag is named, and hides none of the others."""
        self.require(principal, dataset, "read")
        if not self.dataset_exists(dataset):
            raise NotFound(f"dataset {dataset} does not exist")
        return self._listing(self.repo.scan_tags(dataset))

    @staticmethod
    def _listing(scan: TagScan) -> models.TagListing:
        return models.TagListing(
            tags={t: Tag.of(h.current) for t, h in sorted(scan.histories.items())},
            damaged=dict(sorted(scan.damaged.items())),
        )

    def tag_heads(self, dataset: str) -> dict[str, tuple[int, str]]:
        """tag -> (seq, manifest hex), unchecked access: the watcher's cheap view.

        The watcher calls this every poll: what it reads also refreshes the dataset's pack
        set and the file server's tag heads.
        """
        read_at = time.monotonic()
        tags = self._good_tags(dataset)
        self.packs.update(dataset, tags, read_at)
        for tag, history in tags.items():
            self._heads.put((dataset, tag), history.current)
        return {
            t: (h.current.record.seq, h.current.record.manifest_id.hex()) for t, h in tags.items()
        }

    def get_tag(self, principal: Principal | None, dataset: str, tag: str) -> Tag:
        self.require(principal, dataset, "read")
        return Tag.of(self.repo.resolve(dataset, check_tag(tag)))

    def tag_history(self, principal: Principal | None, dataset: str, tag: str) -> list[Tag]:
        self.require(principal, dataset, "read")
        return [Tag.of(r) for r in self.repo.tag_history(dataset, check_tag(tag)).records]

    def set_tag(
        self,
        principal: Principal | None,
        dataset: str,
        tag: str,
        manifest_id: ManifestId,
        expect_seq: int | None = None,
    ) -> Tag:
        """Point the tag at a manifest, signed by the registry key, by compare-and-swap.

        With `expect_seq` (0: the tag must not exist yet) the write only happens if the tag is
        still at that seq, so a client that read it and decided cannot overwrite a move it
        did not see; Conflict tells it to re-read.
        """
        self.require(principal, dataset, "write")
        check_tag(tag)
        if not self.dataset_exists(dataset):
            raise NotFound(f"dataset {dataset} does not exist: an admin creates it first")
        # The manifest must be there (and be this dataset's) before any tag names it.
        self._open_manifest(dataset, manifest_id)
        update = self.repo.update_tag(dataset, tag, manifest_id, expect_seq)
        signed = update.signed
        if update.moved:
            seq = signed.record.seq
            self.audit.record(
                principal, "tag.set", dataset, tag=tag, manifest=manifest_id.hex(), seq=seq
            )
            self._heads.put((dataset, tag), signed)
        return Tag.of(signed)

    # Versions -----------------------------------------------------------------------------
    def version(
        self, principal: Principal | None, dataset: str, tag: str
    ) -> tuple[Manifest, ManifestId]:
        """The decrypted manifest a tag names (for the file server and the web pages).

        The tag's head may be up to `tag_cache_seconds` old when moved through another hub.
        """
        self.require(principal, dataset, "read")
        head = self._heads.get((dataset, check_tag(tag)))
        if head is None:
            head = self.repo.resolve(dataset, tag)
            self._heads.put((dataset, tag), head)
        manifest_id = head.record.manifest_id
        return self.manifests.get(dataset, manifest_id), manifest_id

    def diff(self, principal: Principal | None, dataset: str, a: str, b: str) -> models.Diff:
        """What changed from tag A to tag B, and what B costs a holder of A."""
        manifest_a, id_a = self.version(principal, dataset, a)
        manifest_b, id_b = self.version(principal, dataset, b)
        result = compare.diff(manifest_a, manifest_b)
        result["a"] = {"tag": a, "manifest": id_a.hex()}
        result["b"] = {"tag": b, "manifest": id_b.hex()}
        return models.Diff.model_validate(result)

    # Manifests ----------------------------------------------------------------------------
    def _open_manifest(self, dataset: str, manifest_id: ManifestId) -> bytes:
        """The stored bytes, checked by the repository to be this dataset's manifest."""
        try:
            return self.repo.verified_manifest(dataset, manifest_id).stored
        except NotFound:
            raise NotFound(
                f"manifest {manifest_id.short()} is not in the store; put it first"
            ) from None
        except IntegrityError:
            # Another dataset's manifest (or a damaged one): not this dataset's to serve.
            raise NotFound(
                f"manifest {manifest_id.short()} is not a manifest of {dataset}"
            ) from None

    def get_manifest(
        self, principal: Principal | None, dataset: str, manifest_id: ManifestId
    ) -> bytes:
        self.require(principal, dataset, "read")
        return self._open_manifest(dataset, manifest_id)

    def put_manifest(
        self, principal: Principal | None, dataset: str, manifest_id: ManifestId, stored: bytes
    ) -> bool:
        """Store a sealed manifest after checking its id, its key and every path in it."""
        self.require(principal, dataset, "write")

        # No manifest (so no tag) may name a block the store cannot serve, nor a pack that is
        # neither the dataset's already nor sent through its path: else a writer who learnt
        # another dataset's pack id could tag a manifest naming it, then read it from here.
        def may_use(pack_id: PackId) -> bool:
            sent = self.store.exists(hub_layout.upload_key(dataset, pack_id.hex()))
            return sent or self.packs.allows(dataset, pack_id)

        created = self.repo.put_manifest(dataset, manifest_id, stored, may_use)
        if created:
            self.audit.record(principal, "manifest.put", dataset, manifest=manifest_id.hex())
        return created

    # Packs --------------------------------------------------------------------------------
    # Packs hold the namespace's blocks (ciphertext; keys are in manifests). A dataset's
    # writers add them through its path; its readers read only the packs its tagged
    # manifests (current or past) use. Not one of them, or not stored: the same 404.
    def _require_pack(self, principal: Principal | None, dataset: str, pack_id: PackId) -> str:
        self.require(principal, dataset, "read")
        if not self.packs.allows(dataset, pack_id):
            raise _no_such_pack(dataset, pack_id)
        return layout.pack_key(pack_id)

    def pack_size(self, principal: Principal | None, dataset: str, pack_id: PackId) -> int:
        key = self._require_pack(principal, dataset, pack_id)
        try:
            return self.store.size(key)
        except NotFound:
            raise _no_such_pack(dataset, pack_id) from None

    def get_pack_range(
        self, principal: Principal | None, dataset: str, pack_id: PackId, start: int, length: int
    ) -> bytes:
        key = self._require_pack(principal, dataset, pack_id)
        try:
            return self.store.get_range(key, start, length)
        except NotFound:
            raise _no_such_pack(dataset, pack_id) from None

    def put_pack(
        self, principal: Principal | None, dataset: str, pack_id: PackId, data: bytes
    ) -> bool:
        """Store a pack after checking its bytes against its id; False if already there."""
        self.require(principal, dataset, "write")
        created = self.repo.put_pack(dataset, pack_id, data)  # IntegrityError: not its id
        # The writer holds these bytes: its manifests may name the pack (see put_manifest).
        self.store.put_if_absent(hub_layout.upload_key(dataset, pack_id.hex()), b"{}")
        if created:
            self.audit.record(principal, "pack.put", dataset, pack=pack_id.hex(), size=len(data))
        return created

    # Keys ---------------------------------------------------------------------------------
    def keys(self, principal: Principal | None, dataset: str) -> models.Keys:
        """The dataset key for readers; the namespace's convergence secret for writers too."""
        self.require(principal, dataset, "read")
        keyring = self.repo.keyring
        writer = self.acls.allowed(principal, dataset, "write")
        found = models.Keys(
            dataset=dataset,
            store_id=keyring.store_id,
            dataset_key=keyring.dataset_key(dataset).hex(),
            trusted_signers=[k.hex() for k in keyring.trusted],
            convergence_secret=keyring.convergence_secret.hex() if writer else None,
        )
        self.audit.record(principal, "keys.get", dataset, writer=writer)
        return found

    # Grants -------------------------------------------------------------------------------
    def grants(self, principal: Principal | None, dataset: str) -> models.Grants:
        self.require(principal, dataset, "admin")
        return models.Grants.model_validate(self.acls.get(dataset).to_json())

    def grant(
        self, principal: Principal | None, dataset: str, subject: str, role: str | None
    ) -> models.Grants:
        self.require(principal, dataset, "admin")
        check_subject(subject)
        acl = self.acls.set(dataset, subject, role)
        self.audit.record(principal, "grant.set", dataset, subject=subject, role=role)
        return models.Grants.model_validate(acl.to_json())

    # Agents -------------------------------------------------------------------------------
    def put_status(
        self, principal: Principal | None, agent_id: str, report: dict[str, Any]
    ) -> None:
        who = _need_login(principal)
        hub_layout.check_agent_id(agent_id)
        if not who.admin and who.subject != f"agent:{agent_id}":
            raise Forbidden("not allowed: an agent reports its own status only")
        received = time.time()
        listen = peers.from_report(agent_id, received, report)  # refused before any write
        doc = {"agent": agent_id, "received": received, "report": report}
        self.store.put(hub_layout.agent_status_key(agent_id), json.dumps(doc).encode())
        rollout.record(self.store, agent_id, received, report)
        if listen is not None:
            self.peers.put(listen)

    def peer_hints(self, principal: Principal | None, fleet: str | None) -> models.PeerHints:
        """Where the other fresh agents of the caller's fleet listen (docs/hub.md, "Peer hints").

        An agent's fleet is the one its last report named (`fleet`, if given, must be it); a
        hub admin names the fleet, or gets none. An agent left out for its certificates asks
        in vain: it would otherwise learn the addresses of a fleet that has put it out.
        """
        who = _need_login(principal)
        caller = who.name if who.kind == "agent" else None
        if caller is None and not who.admin:
            raise Forbidden("not allowed: peer hints are for the fleet's agents and hub admins")
        records, left_out = self.peers.snapshot()
        if caller is not None:
            if caller in left_out:
                raise Forbidden(
                    f"not allowed: agent {caller}'s certificates are revoked or expired; "
                    "enrol it again with a new join token"
                )
            own = next((r.fleet for r in records if r.agent == caller), None)
            if fleet is not None and fleet != own:
                raise Forbidden("not allowed: an agent sees the peers of its own fleet only")
            fleet = own
        chosen = (
            [] if fleet is None else peers.choose(records, fleet, caller, left_out, time.time())
        )
        return models.PeerHints(
            fleet=fleet, fresh_seconds=peers.FRESH_SECONDS, peers=[r.hint() for r in chosen]
        )

    def get_status(self, principal: Principal | None, agent_id: str) -> models.AgentStatus:
        who = _need_login(principal)
        if not who.admin and who.subject != f"agent:{hub_layout.check_agent_id(agent_id)}":
            raise Forbidden("not allowed: this needs a hub admin")
        try:
            raw = self.store.get(hub_layout.agent_status_key(agent_id))
        except NotFound:
            raise NotFound(f"agent {echo(agent_id)} has not reported") from None
        return models.AgentStatus.model_validate_json(raw)

    def fleet(self, principal: Principal | None) -> list[models.AgentStatus]:
        self.require_admin(principal)
        found = []
        for key in self.store.list(hub_layout.AGENTS):
            if key.endswith("/status.json"):
                try:
                    found.append(models.AgentStatus.model_validate_json(self.store.get(key)))
                except NotFound:
                    continue
        return found

    def fleet_rollout(self, principal: Principal | None) -> list[models.ChannelRollout]:
        """Each subscribed channel's newest versions going live across the fleet (hub admin)."""
        reports = [(a.agent, a.received, a.report) for a in self.fleet(principal)]
        found = rollout.fleet_rollout(
            self.store, reports, lambda d, m: self.manifests.get(d, m).stored_size()
        )
        return [rollout.as_model(c) for c in found]

    # Fleet: enrolment and revocation ---------------------------------------------------
    def fleet_info(self) -> models.FleetInfo:
        return models.FleetInfo(
            fleet=self.enrolment.fleet_id, fleet_public_key=self.enrolment.fleet_public.hex()
        )

    def create_join_token(self, principal: Principal | None, ttl: float) -> models.JoinToken:
        who = self.require_admin(principal)
        made = models.JoinToken.model_validate(self.enrolment.create_join_token(who, ttl))
        self.audit.record(who, "fleet.join_token", None, expires=made.expires)
        return made

    def enrol(self, join_token: str, agent: str, public_key: bytes) -> models.Enrolled:
        issued = models.Enrolled.model_validate(self.enrolment.enrol(join_token, agent, public_key))
        self.audit.record(
            Principal("agent", agent, via="join"), "fleet.enrol", None, serial=issued.serial
        )
        return issued

    def renew_certificate(
        self, principal: Principal | None, certificate: str, signature: str
    ) -> models.Renewed:
        """A fresh certificate for the calling agent's key (docs/peers.md, "Renewal")."""
        who = _need_login(principal)
        if who.kind != "agent":
            raise Forbidden("not allowed: an agent renews its own certificate, with its token")
        renewed = models.Renewed.model_validate(
            self.enrolment.renew(who.name, certificate, signature)
        )
        self.audit.record(
            who, "fleet.renew", None, serial=renewed.serial, previous=renewed.previous
        )
        return renewed

    def revoke_certificates(
        self, principal: Principal | None, serial: str | None, agent: str | None
    ) -> models.Revoked:
        who = self.require_admin(principal)
        revoked = self.enrolment.revoke(serial, agent)
        self.peers.forget()  # a revoked agent drops out of this hub's hints at once
        self.audit.record(who, "fleet.revoke", None, serial=serial, agent=agent)
        return models.Revoked(seq=revoked.seq, serials=sorted(revoked.serials))

    def revocations(self, principal: Principal | None) -> models.Revocations:
        _need_login(principal)
        held, signed = self.enrolment.revocations()
        return models.Revocations(
            seq=held.seq, serials=sorted(held.serials), signed=base64.b64encode(signed).decode()
        )

    # Audit --------------------------------------------------------------------------------
    def audit_entries(
        self, principal: Principal | None, day: str | None, limit: int = 200
    ) -> list[models.AuditEntry]:
        self.require_admin(principal)
        if day is not None and not _DAY.fullmatch(day):
            raise InvalidInput(f"day must be YYYY-MM-DD, not {echo(day)}")
        return [models.AuditEntry.model_validate(e) for e in self.audit.entries(day, limit)]
