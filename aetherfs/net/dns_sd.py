"""The DNS-SD records an agent announces, and the unicast query that reads them back (pure).

Every agent registers `<agent id>._aetherfs._tcp.local.` with TXT keys `id`, `fleet`, `pv`
(protocol version), `port` (peer protocol port) and `inc` (an incarnation, new at each start, so a
restarted agent's records differ from the ones cached before it was killed). Besides multicast,
a responder answers a query sent to its address on UDP 5353 straight back to the asker (RFC 6762
section 6.7, "legacy unicast"): that is how static peers are identified where multicast does not
reach, and how every known peer's liveness is checked without multicast traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

# The parsing and building of DNS messages is zeroconf's own (imported from its modules: the
# package root does not re-export them for type checkers).
from zeroconf._dns import DNSAddress, DNSPointer, DNSQuestion, DNSService, DNSText
from zeroconf._protocol.incoming import DNSIncoming
from zeroconf._protocol.outgoing import DNSOutgoing
from zeroconf.const import _CLASS_IN, _FLAGS_QR_QUERY, _TYPE_PTR

from aetherfs.errors import InvalidInput
from aetherfs.net.ids import AgentId, FleetId

SERVICE_TYPE = "_aetherfs._tcp.local."
MDNS_PORT = 5353


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """What one agent announces about itself."""

    agent_id: AgentId
    fleet_id: FleetId
    protocol_version: int
    port: int
    incarnation: str
    addresses: tuple[str, ...] = ()

    def txt(self) -> dict[str, str]:
        return {
            "id": self.agent_id.value,
            "fleet": self.fleet_id.value,
            "pv": str(self.protocol_version),
            "port": str(self.port),
            "inc": self.incarnation,
        }


def instance_name(agent_id: AgentId) -> str:
    return f"{agent_id.value}.{SERVICE_TYPE}"


def agent_of(name: str) -> AgentId | None:
    """The agent id in a service instance name, or None for a name not of our service."""
    label, dot, rest = name.partition(".")
    if not dot or rest.lower() != SERVICE_TYPE:
        return None
    try:
        return AgentId(label)
    except InvalidInput:
        return None


def record_from_txt(txt: dict[str, str], addresses: tuple[str, ...]) -> ServiceRecord | None:
    """The record a TXT set describes, or None where a key is missing or malformed."""
    try:
        port = int(txt["port"])
        version = int(txt["pv"])
        record = ServiceRecord(
            AgentId(txt["id"]), FleetId(txt["fleet"]), version, port, txt["inc"], addresses
        )
    except (KeyError, ValueError, InvalidInput):
        return None
    if not 0 < port < 65536 or version < 0 or not record.incarnation:
        return None
    return record


def decode_txt(raw: bytes) -> dict[str, str]:
    """TXT rdata (length-prefixed `key=value` strings) as a dict; the first of a key wins."""
    out: dict[str, str] = {}
    i = 0
    while i < len(raw):
        n = raw[i]
        item = raw[i + 1 : i + 1 + n]
        i += 1 + n
        key, _, value = item.partition(b"=")
        try:
            out.setdefault(key.decode("ascii").lower(), value.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return out


def probe_query(query_id: int) -> bytes:
    """A one-question query for every `_aetherfs._tcp` instance, to send to ADDRESS:5353."""
    out = DNSOutgoing(_FLAGS_QR_QUERY, multicast=False, id_=query_id)
    out.add_question(DNSQuestion(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN))
    return out.packets()[0]


def parse_reply(data: bytes) -> list[ServiceRecord]:
    """The complete service records in a DNS response; malformed or partial ones are dropped."""
    msg = DNSIncoming(data)
    if not msg.valid or not msg.is_response():
        return []
    instances: list[str] = []
    services: dict[str, DNSService] = {}
    texts: dict[str, bytes] = {}
    hosts: dict[str, list[str]] = {}
    for rec in msg.answers():
        key = rec.name.lower()
        if isinstance(rec, DNSPointer) and key == SERVICE_TYPE and rec.ttl > 0:
            instances.append(rec.alias.lower())
        elif isinstance(rec, DNSService):
            services[key] = rec
        elif isinstance(rec, DNSText):
            texts[key] = rec.text
        elif isinstance(rec, DNSAddress) and len(rec.address) == 4:
            hosts.setdefault(key, []).append(".".join(str(b) for b in rec.address))
    records = []
    for name in instances:
        srv, text = services.get(name), texts.get(name)
        if srv is None or text is None:
            continue
        record = record_from_txt(decode_txt(text), tuple(hosts.get(srv.server.lower(), ())))
        if record is not None and agent_of(name) == record.agent_id:
            records.append(record)
    return records
