"""Where blocks come from: one BlockSource seam (cache, store, later peers) and a planner."""
