"""Thin, pure helpers over pyca/cryptography: keys, hashing, canonical JSON, HPKE."""
