"""The agent's network side: discovery of peers on the LAN (zeroconf), and the trio transport."""
