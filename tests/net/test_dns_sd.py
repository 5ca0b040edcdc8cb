"""DNS-SD records of an agent: what a unicast answer carries is parsed back, or refused."""

from __future__ import annotations

import socket

from hypothesis import given
from hypothesis import strategies as st
from zeroconf._dns import DNSAddress, DNSPointer, DNSService, DNSText
from zeroconf._protocol.incoming import DNSIncoming
from zeroconf._protocol.outgoing import DNSOutgoing
from zeroconf.const import (
    _CLASS_IN,
    _FLAGS_AA,
    _FLAGS_QR_RESPONSE,
    _TYPE_A,
    _TYPE_PTR,
    _TYPE_SRV,
    _TYPE_TXT,
)

from aetherfs.net.dns_sd import (
    SERVICE_TYPE,
    ServiceRecord,
    agent_of,
    decode_txt,
    instance_name,
    parse_reply,
    probe_query,
)
from aetherfs.net.ids import AgentId, FleetId

RECORD = ServiceRecord(AgentId("agent-1"), FleetId("fleet-a"), 3, 7070, "c0ffee", ("10.1.2.3",))


def _txt(pairs: dict[str, str]) -> bytes:
    out = b""
    for k, v in pairs.items():
        item = f"{k}={v}".encode()
        out += bytes([len(item)]) + item
    return out


def _reply(txt: dict[str, str], name: str | None = None, server: str = "agent-1.local.") -> bytes:
    name = name or instance_name(RECORD.agent_id)
    out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA, multicast=False)
    out.add_answer_at_time(DNSPointer(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN, 120, name), 0)
    out.add_additional_answer(DNSService(name, _TYPE_SRV, _CLASS_IN, 120, 0, 0, 7070, server))
    out.add_additional_answer(DNSText(name, _TYPE_TXT, _CLASS_IN, 120, _txt(txt)))
    addr = socket.inet_aton("10.1.2.3")
    out.add_additional_answer(DNSAddress(server, _TYPE_A, _CLASS_IN, 120, addr))
    return out.packets()[0]


def test_a_unicast_answer_parses_back_to_the_record() -> None:
    assert parse_reply(_reply(RECORD.txt())) == [RECORD]


def test_missing_or_malformed_txt_keys_are_refused() -> None:
    for broken in ({"port": "x"}, {"pv": "-1"}, {"id": "bad id"}, {"port": "70000"}):
        assert parse_reply(_reply({**RECORD.txt(), **broken})) == [], broken
    txt = RECORD.txt()
    del txt["fleet"]
    assert parse_reply(_reply(txt)) == []


def test_a_txt_id_other_than_the_instance_name_is_refused() -> None:
    assert parse_reply(_reply(RECORD.txt(), name=instance_name(AgentId("agent-2")))) == []


def test_the_probe_is_one_ptr_question_for_our_service() -> None:
    msg = DNSIncoming(probe_query(1234))
    assert msg.id == 1234 and not msg.is_response()
    assert [(q.name, q.type) for q in msg.questions] == [(SERVICE_TYPE, _TYPE_PTR)]
    assert parse_reply(probe_query(1)) == []  # a query is not an answer


def test_names_and_txt_decoding() -> None:
    assert agent_of("agent-1._aetherfs._tcp.local.") == AgentId("agent-1")
    assert agent_of("agent-1._other._tcp.local.") is None
    assert agent_of("bad label!._aetherfs._tcp.local.") is None
    assert decode_txt(b"\x03a=1\x03a=2\x01b") == {"a": "1", "b": ""}


@given(st.binary(max_size=600))
def test_garbage_never_raises(data: bytes) -> None:
    assert isinstance(parse_reply(data), list)


@given(st.binary(max_size=300))
def test_garbage_txt_never_raises(data: bytes) -> None:
    assert isinstance(decode_txt(data), dict)
