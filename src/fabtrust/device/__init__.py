"""Reference device: a secure-element model, the provisioning agent and its wire formats, the boot
manager, and a simulated silicon vendor for tests and the demo.

Portable by rule (DESIGN.md): imports only :mod:`fabtrust.crypto`, :mod:`fabtrust.errors` and the
pure image format :mod:`fabtrust.firmware.image` (a wire format), nothing else of ``firmware``.
"""
