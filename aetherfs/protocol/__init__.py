"""The peer wire protocol, sans-I/O: frames, handshake, admission, messages and the connection
state machine. Takes bytes and `now`, returns events, bytes to send and the next deadline; it
never reads a clock or a socket. The spec is `protocol/peer.md`.

Imports only `aetherfs.core` and `aetherfs.errors` (plus msgpack, PyNaCl, BLAKE3).
"""
