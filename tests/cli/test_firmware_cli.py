"""``fabtrust firmware`` driven in-process through ``main()``: signers, a 2-of-3 policy, a release
created from a firmware binary and a component list, approvals, publication, listing, the SBOM and
the image; refusals exit 2 with one line and change nothing. Reading (list, show, sbom) needs no
key-store passphrase.

The OEM home (root CA, product) is set up through the Python API: the CLI for those steps has its
own tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fabtrust.crypto.keys import load_public_key
from fabtrust.device.vendor import SiliconVendor
from fabtrust.firmware.image import ImageVersion, verify_image
from fabtrust.home import Home
from fabtrust.tlog.audit import AuditEntry, Outcome
from tests.approvals import through_approval
from tests.cli.result import Result, environment, run_in_process

PASSPHRASE = "firmware-cli-keystore-passphrase"
ENV = {"FABTRUST_KEYSTORE_PASSPHRASE": PASSPHRASE, "COLUMNS": "200"}
BODY = b"\x00\x20\x00\x20firmware for the CLI test " * 200


def invoke(home: Path, *args: object) -> Result:
    return run_in_process(("--home", home, *args), (PASSPHRASE,))


def publish(home: Path, release_id: str) -> Result:
    """``firmware release publish``: asked for, approved by the release signers, then spent."""
    return through_approval(
        lambda *args: invoke(home, *args),
        lambda: Home.open(home, passphrase=lambda: PASSPHRASE, pin=never),
        "firmware",
        "release",
        "publish",
        release_id,
    )


def never() -> str:
    raise AssertionError("a PIN was asked for")


@pytest.fixture
def oem(tmp_path: Path) -> Path:
    path = tmp_path / "oem"
    now = datetime.now(UTC)
    with Home.init(path, passphrase=lambda: PASSPHRASE, pin=never, actor="oem-admin") as home:
        home.pki.init_root(
            attributes={"commonName": "Acme Root CA", "organizationName": "Acme"},
            custodians=[("c1", "custodian-one-words"), ("c2", "custodian-two-words")],
            threshold=2,
            scrypt_n=2**14,
        )
        vendor = SiliconVendor("Trusted Silicon", now=now - timedelta(days=1))
        home.production.create_product(
            "widget", description="Widget", device_domain="widget.example", vendor_roots=[vendor.root]
        )
    (tmp_path / "firmware.bin").write_bytes(BODY)
    (tmp_path / "components.json").write_text(
        json.dumps(
            [
                {"name": "zephyr", "version": "3.7.0", "purl": "pkg:github/zephyrproject-rtos/zephyr@v3.7.0"},
                {"name": "mbedtls", "version": "3.6.0", "license": "Apache-2.0"},
            ]
        )
    )
    return path


def audit_tail(home: Path) -> AuditEntry:
    with Home.open(home, passphrase=never, pin=never) as h:
        return AuditEntry.parse(h.log.entries(h.log.size() - 1, h.log.size())[0])


def listing(home: Path) -> list[dict[str, Any]]:
    result = invoke(home, "firmware", "release", "list", "--json").ok()
    doc: list[dict[str, Any]] = json.loads(result.out)
    return doc


def test_the_release_flow_through_the_cli(oem: Path, tmp_path: Path) -> None:
    with environment(ENV):
        for name in ("alice", "bob", "carol"):
            out = invoke(oem, "firmware", "signer", "add", name).ok().out
            assert f"release signer {name}: ecdsa-p256 key" in out
        invoke(oem, "firmware", "signer", "add", "dave", "--key-type", "ed25519").ok()
        invoke(oem, "firmware", "signer", "revoke", "dave").ok()
        signers = json.loads(invoke(oem, "firmware", "signer", "list", "--json").ok().out)
        assert [(s["name"], s["status"], s["key_type"]) for s in signers] == [
            ("alice", "active", "ecdsa-p256"),
            ("bob", "active", "ecdsa-p256"),
            ("carol", "active", "ecdsa-p256"),
            ("dave", "revoked", "ed25519"),
        ]
        assert "revoked" in invoke(oem, "firmware", "signer", "list").ok().out

        out = invoke(oem, "firmware", "policy", "set", "widget", "--threshold", 2).ok().out
        assert "releases need 2 of the 3 active release signers" in out
        invoke(oem, "firmware", "policy", "set", "widget", "--threshold", 4).refused("more than the 3 active")

        created = invoke(
            oem,
            "firmware",
            "release",
            "create",
            "widget",
            "1.0.0",
            "--image",
            tmp_path / "firmware.bin",
            "--security-counter",
            3,
            "--notes",
            "first [release]",
            "--components",
            tmp_path / "components.json",
        ).ok()
        assert "release widget-1.0.0 created (draft)" in created.out
        assert "none yet; 2 needed" in created.out

        invoke(oem, "firmware", "release", "approve", "widget-1.0.0", "--signer", "alice").ok()
        before = listing(oem)
        publish(oem, "widget-1.0.0").refused("1 approval(s)", "2 needed")
        invoke(oem, "firmware", "release", "approve", "widget-1.0.0", "--signer", "alice").refused(
            "alice has approved release widget-1.0.0 already"
        )
        invoke(oem, "firmware", "release", "approve", "widget-1.0.0", "--signer", "dave").refused("revoked")
        invoke(oem, "firmware", "release", "approve", "widget-1.0.0", "--signer", "eve").refused(
            "no release signer"
        )
        assert listing(oem) == before
        entry = audit_tail(oem)
        assert (entry.action, entry.outcome) == ("release.approve", Outcome.REFUSED)

        out = invoke(oem, "firmware", "release", "approve", "widget-1.0.0", "--signer", "carol").ok().out
        assert "2 of 2 (approved)" in out
        published = publish(oem, "widget-1.0.0").ok().out
        assert "release widget-1.0.0 published" in published

        # rollback rules at the CLI: an older version needs --rollback
        invoke(
            oem,
            "firmware",
            "release",
            "create",
            "widget",
            "0.9.0",
            "--image",
            tmp_path / "firmware.bin",
            "--security-counter",
            3,
        ).refused("not higher", "--rollback")
        rollback = invoke(
            oem,
            "firmware",
            "release",
            "create",
            "widget",
            "0.9.0",
            "--image",
            tmp_path / "firmware.bin",
            "--security-counter",
            3,
            "--rollback",
        ).ok()
        assert "rollback release widget-0.9.0-rollback created" in rollback.out

    # reading needs no passphrase
    with environment({"COLUMNS": "200"}):
        shown = json.loads(invoke(oem, "firmware", "release", "show", "widget-1.0.0", "--json").ok().out)
        assert shown["state"] == "published"
        assert shown["statement"]["notes"] == "first [release]"
        assert [(a["signer"], a["status"]) for a in shown["approvals"]] == [
            ("alice", "valid"),
            ("carol", "valid"),
        ]
        table = invoke(oem, "firmware", "release", "show", "widget-1.0.0").ok().out
        assert "published" in table
        assert shown["image_sha256"] in table
        assert "first [release]" in table  # printed as text, not markup
        releases = listing(oem)
        assert [(r["release_id"], r["state"]) for r in releases] == [
            ("widget-1.0.0", "published"),
            ("widget-0.9.0-rollback", "draft"),
        ]
        assert "widget-0.9.0-rollback" in invoke(oem, "firmware", "release", "list").ok().out
        document = json.loads(invoke(oem, "firmware", "sbom", "widget-1.0.0").ok().out)
        assert document["specVersion"] == "1.6"
        assert document["metadata"]["component"]["hashes"][0]["content"] == shown["statement"]["body_sha256"]
        assert sorted(c["name"] for c in document["components"]) == ["mbedtls", "zephyr"]
        invoke(oem, "firmware", "sbom", "widget-3.0.0").refused("no release")

        out = tmp_path / "widget-1.0.0.img"
        invoke(oem, "firmware", "release", "image", "widget-1.0.0", "--out", out).ok()
        invoke(oem, "firmware", "release", "image", "widget-1.0.0", "--out", out).refused(
            "refusing to overwrite"
        )
        invoke(oem, "firmware", "release", "image", "widget-0.9.0-rollback", "--out", tmp_path / "x").refused(
            "not published"
        )
        assert not (tmp_path / "x").exists()

    with Home.open(oem, passphrase=lambda: PASSPHRASE, pin=never) as home:
        firmware = load_public_key(home.releases.firmware_key().public_key_der)
        class_key = serialization.load_der_private_key(
            home.releases.class_key_private("widget", purpose="test"), password=None
        )
        assert isinstance(class_key, ec.EllipticCurvePrivateKey)
        assert isinstance(firmware, ec.EllipticCurvePublicKey)
        verified = verify_image(
            out.read_bytes(), trusted_keys=[home.production.oem_key_hash()], decryption_key=class_key
        )
    assert (verified.version, verified.security_counter) == (ImageVersion(1, 0, 0), 3)
    assert bytes(verified.body[: len(BODY)]) == BODY


def test_bad_input_at_the_cli(oem: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad-components.json"
    bad.write_text('[{"name": "x"}]')
    sbom = tmp_path / "sbom.json"
    sbom.write_text('{"bomFormat": "CycloneDX", "specVersion": "1.4"}')
    base = ("firmware", "release", "create", "widget", "1.0.0", "--security-counter", 1)
    with environment(ENV):
        invoke(oem, *base, "--image", tmp_path / "missing.bin").refused("missing.bin")
        invoke(oem, *base, "--image", tmp_path / "firmware.bin", "--components", bad).refused(
            "needs a name and a version"
        )
        invoke(oem, *base, "--image", tmp_path / "firmware.bin", "--sbom", sbom).refused(
            "specVersion is '1.4'"
        )
        invoke(
            oem,
            "firmware",
            "release",
            "create",
            "widget",
            "x.y",
            "--image",
            tmp_path / "firmware.bin",
            "--security-counter",
            1,
        ).refused("version must look like")
        invoke(
            oem,
            "firmware",
            "release",
            "create",
            "widget",
            "1.0",
            "--image",
            tmp_path / "firmware.bin",
            "--security-counter",
            -1,
        ).refused("security-counter")
        invoke(oem, "firmware", "signer", "add", "Bad Name").refused("signer name")
        invoke(oem, "firmware", "signer", "add", "x", "--key-type", "rsa").refused("unknown key type")
        invoke(oem, "firmware", "release", "publish", "widget-1.0.0").refused("no release")
        assert listing(oem) == []
