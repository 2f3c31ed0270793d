"""Reusable constructs of this app; each keeps its runtime code in a folder beside it."""
