"""The hub: a stateless tag registry and API server over a store (REST, gRPC, files, web)."""
