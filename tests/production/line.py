"""One production line for tests: the OEM's root ceremony, product and release, a station
enrolled and certified, packages sealed to it. Shared by the production, API and reliability
suites so the story is told once."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fabtrust.device.vendor import SiliconVendor
from fabtrust.home import Home

DOMAIN = "widget.devices.acme.example"
CUSTODIANS = [(f"custodian-{i}", f"custodian-{i}-passphrase") for i in range(1, 4)]
IMAGE = b"\x7fFWIMG placeholder firmware 1.0.0\n" * 64


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def never() -> str:
    raise AssertionError("a PIN was asked for")


def make_home(path: Path, actor: str, clock: Clock) -> Home:
    return Home.init(path, passphrase=lambda: f"{actor}-passphrase", pin=never, actor=actor, clock=clock)


def enroll(oem: Home, station: Home, station_id: str) -> None:
    request = station.station.enroll(station_id, organization="Acme")
    station.station.install_certificate(oem.production.certify_station(request, organization="Acme"))


def seal_for(oem: Home, station: Home, order_id: str, quota: int | None = None) -> bytes:
    return oem.production.seal_package(
        order_id, station.station.issuing_request(order_id), station_quota=quota
    )


def found_product(oem: Home, vendor: SiliconVendor, *, image: bytes = IMAGE, domain: str = DOMAIN) -> str:
    """Root ceremony (2 of 3 custodians), product ``widget`` accepting ``vendor``'s chips, and
    release 1.0.0 of ``image``; returns the release id."""
    oem.pki.init_root(
        attributes={"commonName": "Acme Root CA", "organizationName": "Acme"},
        custodians=CUSTODIANS,
        threshold=2,
        scrypt_n=2**14,
    )
    oem.production.create_product(
        "widget", description="Widget", device_domain=domain, vendor_roots=[vendor.root], organization="Acme"
    )
    return oem.production.create_release("widget", "1.0.0", image)
