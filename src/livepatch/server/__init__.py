"""The patch service: API, storage, tokens and machines, rollout, admin CLI."""
