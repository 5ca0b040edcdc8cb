"""A typed handle on the generated gRPC stub, for programs that talk to a local agent."""

from __future__ import annotations

import grpc

from aetherfs.agent.proto import agent_pb2_grpc


def agent_stub(channel: grpc.Channel) -> agent_pb2_grpc.AgentServiceStub:
    """`channel` from grpc.insecure_channel("unix:DATA_ROOT/.agent/grpc.sock") or HOST:PORT."""
    return agent_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
