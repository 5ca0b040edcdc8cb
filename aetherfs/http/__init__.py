"""HTTP pieces shared by the hub and the agent (file serving over a small tree interface)."""
