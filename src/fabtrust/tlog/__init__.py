"""Tamper-evident audit log: RFC 9162 Merkle hashing and proofs, C2SP checkpoints (pure), persistence."""
