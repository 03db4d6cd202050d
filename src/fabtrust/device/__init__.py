"""Reference device: a secure-element model, the provisioning agent and its wire formats, and a
simulated silicon vendor for tests and the demo.

Portable by rule (DESIGN.md): imports only :mod:`fabtrust.crypto` and :mod:`fabtrust.errors`.
"""
