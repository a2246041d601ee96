"""Tamper-evident audit log primitives: hash chain and signed checkpoints (no Flask, no DB)."""
