"""The `aetherfs` command."""
