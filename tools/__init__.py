"""Operator commands for a deployed app (they call AWS with your credentials)."""
