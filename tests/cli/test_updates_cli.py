"""``fabtrust updates`` driven in-process: the repository is made with k-of-n root keys, a published
firmware release is offered to devices, and python-tuf's own client (a device with the root the CLI
wrote) fetches exactly the published image with its release metadata. Refusals change nothing."""

from __future__ import annotations

import json
from pathlib import Path

from fabtrust.api.app import create_app
from fabtrust.home import Home
from tests.cli.result import environment
from tests.cli.test_firmware_cli import ENV, invoke, never, publish
from tests.cli.test_firmware_cli import oem as oem  # the OEM home fixture (explicit re-export)
from tests.firmware.test_updates import Device
from tests.fixtures.serving import serving


def publish_release(oem: Path, tmp_path: Path) -> None:
    for name in ("alice", "bob"):
        invoke(oem, "firmware", "signer", "add", name).ok()
    invoke(oem, "firmware", "policy", "set", "widget", "--threshold", 2).ok()
    invoke(
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
        "--components",
        tmp_path / "components.json",
    ).ok()
    for name in ("alice", "bob"):
        invoke(oem, "firmware", "release", "approve", "widget-1.0.0", "--signer", name).ok()
    publish(oem, "widget-1.0.0").ok()


def status(oem: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads(invoke(oem, "updates", "status", "--json").ok().out)
    return doc


def test_a_published_release_reaches_a_tuf_client(oem: Path, tmp_path: Path) -> None:
    with environment(ENV):
        publish_release(oem, tmp_path)
        invoke(oem, "updates", "publish", "widget-1.0.0").refused("not initialised")
        out = invoke(oem, "updates", "init", "--root-keys", 3, "--root-threshold", 2).ok().out
        assert "root 2 of 3" in out
        invoke(oem, "updates", "init").refused("exists already")
        invoke(oem, "updates", "root", "--out", tmp_path / "root.json").ok()
        before = status(oem)
        invoke(oem, "updates", "publish", "widget-9.9.9").refused("widget-9.9.9")
        assert status(oem) == before

        out = invoke(oem, "updates", "publish", "widget-1.0.0").ok().out
        assert "target widget/1.0.0.mcuboot" in out
        after = status(oem)
        assert after["versions"] == {**before["versions"], "targets": 2, "snapshot": 2, "timestamp": 2}  # type: ignore[dict-item]
        [target] = after["targets"]  # type: ignore[misc]
        assert target["custom"] == {
            "release": "widget-1.0.0",
            "product": "widget",
            "version": "1.0.0",
            "security_counter": 3,
        }
        assert "timestamp version 3" in invoke(oem, "updates", "refresh").ok().out

    with Home.open(oem, passphrase=never, pin=never) as home:
        image = home.releases.image("widget-1.0.0")
        with serving(create_app(home)) as port:
            (tmp_path / "device" / "metadata").mkdir(parents=True)
            device = Device(port, (tmp_path / "root.json").read_bytes(), tmp_path / "device")
            info, data = device.fetch("widget/1.0.0.mcuboot")
    assert data == image
    assert info.custom["security_counter"] == 3


def key_labels(oem: Path) -> list[str]:
    with Home.open(oem, passphrase=lambda: ENV["FABTRUST_KEYSTORE_PASSPHRASE"], pin=never) as home:
        return sorted(info.label for info in home.keystore().list())


def test_refusals_make_no_keys_and_publish_nothing(oem: Path, tmp_path: Path) -> None:
    with environment(ENV):
        before = key_labels(oem)
        invoke(oem, "updates", "init", "--root-keys", 2, "--root-threshold", 3).refused("root threshold")
        assert key_labels(oem) == before  # refused before a key was made
        invoke(oem, "updates", "init", "--root-keys", 1, "--root-threshold", 1).ok()
        made = key_labels(oem)
        invoke(oem, "updates", "init").refused("exists already")
        assert key_labels(oem) == made

        for name in ("alice", "bob"):
            invoke(oem, "firmware", "signer", "add", name).ok()
        invoke(oem, "firmware", "policy", "set", "widget", "--threshold", 2).ok()
        invoke(
            oem, "firmware", "release", "create", "widget", "1.0.0",
            "--image", tmp_path / "firmware.bin", "--security-counter", 1,
        ).ok()  # fmt: skip
        invoke(oem, "firmware", "release", "approve", "widget-1.0.0", "--signer", "alice").ok()
        unpublished = status(oem)
        invoke(oem, "updates", "publish", "widget-1.0.0").refused("not published")
        assert status(oem) == unpublished
        assert unpublished["targets"] == []
