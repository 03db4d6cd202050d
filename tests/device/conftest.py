"""Fixtures for the reference-device tests: one vendor per module (CA key generation is the slow
part), a fresh chip and agent per test."""

from __future__ import annotations

import pytest

from fabtrust.device.agent import DeviceAgent
from fabtrust.device.element import SecureElement
from fabtrust.device.vendor import SiliconVendor
from tests.device.helpers import NOW, IssuingCa


@pytest.fixture(scope="module")
def vendor() -> SiliconVendor:
    return SiliconVendor("Acme Silicon", now=NOW)


@pytest.fixture(scope="module")
def issuing_ca() -> IssuingCa:
    return IssuingCa.new()


@pytest.fixture
def chip(vendor: SiliconVendor) -> SecureElement:
    return vendor.make_chip()


@pytest.fixture
def agent(chip: SecureElement) -> DeviceAgent:
    return DeviceAgent(chip)
