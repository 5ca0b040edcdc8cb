"""What the CLI, the hub and the agent do with datasets: push, pull, inspect, diff."""
