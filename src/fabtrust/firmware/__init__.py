"""Firmware: the MCUboot image format (:mod:`fabtrust.firmware.image`); releases, approvals, SBOM and
the update repository build on it."""
