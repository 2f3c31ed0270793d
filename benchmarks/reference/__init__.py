"""The classic container, written from its public description, as the benchmark's baseline."""
