"""One production line for tests: the OEM's root ceremony, product and firmware release (three
release signers, two of them approve, published as a signed, encrypted MCUboot image), a station
enrolled and certified, packages sealed to it. Shared by the production, API and reliability
suites so the story is told once."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fabtrust.device.vendor import SiliconVendor
from fabtrust.home import Home
from tests.approvals import publish_ticket

DOMAIN = "widget.devices.acme.example"
CUSTODIANS = [(f"custodian-{i}", f"custodian-{i}-passphrase") for i in range(1, 4)]
#: The firmware binary of release 1.0.0 (the published image wraps, signs and encrypts it).
FIRMWARE = b"\x7fFWIMG widget firmware 1.0.0\n" * 64
SIGNERS = ("alice", "bob", "carol")
SECURITY_COUNTER = 1


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


def found_product(
    oem: Home, vendor: SiliconVendor, *, firmware: bytes = FIRMWARE, domain: str = DOMAIN
) -> str:
    """Root ceremony (2 of 3 custodians), product ``widget`` accepting ``vendor``'s chips, and
    release 1.0.0 of ``firmware`` published after 2 of its 3 release signers approved it; returns
    the release id."""
    oem.pki.init_root(
        attributes={"commonName": "Acme Root CA", "organizationName": "Acme"},
        custodians=CUSTODIANS,
        threshold=2,
        scrypt_n=2**14,
    )
    oem.production.create_product(
        "widget", description="Widget", device_domain=domain, vendor_roots=[vendor.root], organization="Acme"
    )
    return publish(oem, "1.0.0", firmware)


def publish(
    oem: Home,
    version: str,
    firmware: bytes = FIRMWARE,
    *,
    security_counter: int = SECURITY_COUNTER,
    approvers: tuple[str, ...] = SIGNERS[:2],
) -> str:
    """A release of ``widget``: signers and a 2-of-3 policy on first use, created, approved by
    ``approvers`` and published (if they are enough); returns the release id."""
    releases = oem.releases
    if not releases.signers():
        for name in SIGNERS:
            releases.add_signer(name)
        releases.set_policy("widget", 2)
    release = releases.create("widget", version, firmware, security_counter, f"widget {version}")
    for name in approvers:
        releases.approve(release.release_id, name)
    if len(approvers) >= 2:
        releases.publish(release.release_id, publish_ticket(oem, release.release_id))
    return release.release_id


def published_image(oem: Home, release_id: str) -> bytes:
    """The published MCUboot image of a release: what stations program."""
    return oem.releases.image(release_id)
