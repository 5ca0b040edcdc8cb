"""Network I/O around the sans-I/O protocol: the trio TCP transport, and discovery."""
