"""SBOMs: CycloneDX 1.6 documents built with cyclonedx-python-lib and validated offline against the
1.6 JSON schema the library ships; hand-broken documents fail with InvalidInput naming the problem."""

from __future__ import annotations

import copy
import json
import re
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from fabtrust.errors import InvalidInput
from fabtrust.firmware import sbom
from fabtrust.firmware.sbom import ComponentSpec, build_sbom, check_firmware, parse_components, validate

T0 = datetime(2031, 5, 4, 8, 0, 0, tzinfo=UTC)
BODY_SHA256 = "5d" * 32
COMPONENTS = (
    ComponentSpec(
        "zephyr", "3.7.0", purl="pkg:github/zephyrproject-rtos/zephyr@v3.7.0", license="Apache-2.0"
    ),
    ComponentSpec("mbedtls", "3.6.0", license="Apache-2.0 OR GPL-2.0-or-later"),
    ComponentSpec("radio-blob", "7", license="Acme Proprietary", type="firmware"),
    ComponentSpec("mcuboot", "2.1.0", license="apache-2.0", type="application"),
)


def build(**kw: Any) -> bytes:
    args: dict[str, Any] = {
        "product": "widget",
        "version": "1.2.3",
        "body_sha256": BODY_SHA256,
        "components": COMPONENTS,
        "timestamp": T0,
    }
    args.update(kw)
    return build_sbom(**args)


@pytest.fixture(scope="module")
def good() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(build())
    return doc


def test_a_built_sbom_is_valid_cyclonedx_1_6(good: dict[str, Any]) -> None:
    serial = uuid.UUID("0f6c1d2e-3b4a-4c5d-8e6f-708192a3b4c5")
    raw = build(serial=serial)
    doc = validate(raw)
    assert (doc["bomFormat"], doc["specVersion"], doc["version"]) == ("CycloneDX", "1.6", 1)
    assert doc["serialNumber"] == f"urn:uuid:{serial}"
    assert doc["metadata"]["timestamp"].startswith("2031-05-04T08:00:00")
    assert doc["metadata"]["component"] == {
        "bom-ref": "firmware",
        "type": "firmware",
        "name": "widget",
        "version": "1.2.3",
        "hashes": [{"alg": "SHA-256", "content": BODY_SHA256}],
    }
    by_name = {c["name"]: c for c in doc["components"]}
    assert set(by_name) == {"zephyr", "mbedtls", "radio-blob", "mcuboot"}
    assert by_name["zephyr"]["purl"] == "pkg:github/zephyrproject-rtos/zephyr@v3.7.0"
    assert by_name["zephyr"]["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert by_name["mcuboot"]["licenses"] == [{"license": {"id": "Apache-2.0"}}]  # id fixed up
    assert by_name["mbedtls"]["licenses"] == [{"expression": "Apache-2.0 OR GPL-2.0-or-later"}]
    assert by_name["radio-blob"]["licenses"] == [{"license": {"name": "Acme Proprietary"}}]
    assert by_name["radio-blob"]["type"] == "firmware"
    firmware_deps = next(d for d in doc["dependencies"] if d["ref"] == "firmware")
    assert sorted(firmware_deps["dependsOn"]) == sorted(c["bom-ref"] for c in doc["components"])
    check_firmware(doc, product="widget", version="1.2.3", body_sha256=BODY_SHA256)
    assert build(serial=serial) == raw  # same input, same bytes
    assert json.loads(build())["serialNumber"] != good["serialNumber"]  # fresh serial by default


def test_an_sbom_without_components_is_valid() -> None:
    doc = validate(build(components=()))
    assert doc.get("components", []) == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("specVersion", "1.5"), "specVersion is '1.5'; fabtrust accepts CycloneDX 1.6 only"),
        (_set("specVersion", 1.6), "specVersion is missing or malformed"),
        (_set("specVersion", _DELETE), "specVersion is missing or malformed"),
        (_set("bomFormat", "SPDX"), "not a CycloneDX document"),
        (_set("metadata/component/name", _DELETE), "at /metadata/component: 'name' is a required property"),
        (_set("metadata/component/type", _DELETE), "at /metadata/component: 'type' is a required property"),
        (
            _set("metadata/component/hashes/0/content", "not-hex"),
            "at /metadata/component/hashes/0/content: 'not-hex' does not match",
        ),
        (_set("metadata/component/hashes/0/alg", "SHA-257"), "at /metadata/component/hashes/0/alg"),
        (_set("components/0/type", "gizmo"), "at /components/0/type: 'gizmo' is not one of"),
        (_set("serialNumber", "12345"), "at /serialNumber"),
        (_set("metadata/timestamp", "yesterday"), "at /metadata/timestamp: 'yesterday' is not a 'date-time'"),
        (_set("version", 0), "at /version"),
        (_set("extra", {"x": 1}), "at the document: Additional properties are not allowed"),
        (_set("components/0/licenses", "MIT"), "at /components/0/licenses"),
    ],
    ids=[
        "spec/1.5",
        "spec/number",
        "spec/missing",
        "format/spdx",
        "required/name",
        "required/type",
        "hash/content",
        "hash/alg",
        "component/type",
        "serial/not-urn",
        "timestamp/format",
        "version/zero",
        "unknown/member",
        "licenses/shape",
    ],
)
def test_broken_documents_are_refused_naming_the_problem(
    good: dict[str, Any], change: Callable[[dict[str, Any]], None], message: str
) -> None:
    doc = copy.deepcopy(good)
    change(doc)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        validate(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"bomFormat": "CycloneDX", "bomFormat": "CycloneDX"}', "duplicate member"),
        (b"{" * 100_000, "not valid JSON"),
        (b" " * (sbom.MAX_SBOM + 1), "larger than"),
    ],
    ids=["empty", "not-utf8", "array", "duplicate", "deep", "too-large"],
)
def test_non_documents_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate(raw)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"product": "gadget"}, "describes firmware 'gadget', not 'widget'"),
        ({"version": "1.2.4"}, "describes version '1.2.4', not '1.2.3'"),
        ({"body_sha256": "00" * 32}, "not the hash of this release's firmware body"),
    ],
    ids=["product", "version", "hash"],
)
def test_an_sbom_must_describe_the_release(kw: dict[str, str], message: str) -> None:
    doc = validate(build(**kw))
    with pytest.raises(InvalidInput, match=message):
        check_firmware(doc, product="widget", version="1.2.3", body_sha256=BODY_SHA256)


def test_the_firmware_must_be_the_metadata_component(good: dict[str, Any]) -> None:
    doc = copy.deepcopy(good)
    doc["metadata"]["component"]["type"] = "application"
    with pytest.raises(InvalidInput, match="not of type firmware"):
        check_firmware(
            validate(json.dumps(doc).encode()), product="widget", version="1.2.3", body_sha256=BODY_SHA256
        )
    del doc["metadata"]["component"]
    with pytest.raises(InvalidInput, match=r"no metadata\.component"):
        check_firmware(
            validate(json.dumps(doc).encode()), product="widget", version="1.2.3", body_sha256=BODY_SHA256
        )
    doc = copy.deepcopy(good)
    doc["metadata"]["component"]["hashes"] = [{"alg": "SHA-512", "content": "ab" * 64}]
    with pytest.raises(InvalidInput, match="no SHA-256 hash"):
        check_firmware(
            validate(json.dumps(doc).encode()), product="widget", version="1.2.3", body_sha256=BODY_SHA256
        )


def test_validation_needs_no_network(good: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """With every way out of the process refused, a fresh validator still loads its schemas (and the
    SPDX, JSF and cryptography schemas the 1.6 schema refers to) and validates."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("SBOM validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    sbom._validator.cache_clear()
    try:
        validate(json.dumps(good).encode())
        broken = copy.deepcopy(good)
        broken["components"][0]["licenses"] = [
            {"license": {"id": "Not-An-SPDX-Id"}}
        ]  # checked via spdx schema
        with pytest.raises(InvalidInput, match="/components/0/licenses/0"):
            validate(json.dumps(broken).encode())
    finally:
        sbom._validator.cache_clear()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{}", "JSON array"),
        (b'[{"name": "x"}]', "needs a name and a version"),
        (b'[{"name": "x", "version": "1", "sha1": "ab"}]', "unknown fields \\['sha1'\\]"),
        (b'[{"name": "x", "version": "1", "purl": "not a purl"}]', "not a valid package URL"),
        (b'[{"name": "x", "version": "1", "type": "gizmo"}]', "unknown type 'gizmo'"),
        (b'[{"name": "", "version": "1"}]', "component name"),
        (b'[{"name": "x\\n", "version": "1"}]', "control characters"),
        (b'[{"name": "x", "version": 1}]', "version of component 'x'"),
        (b"[1]", "entry 0 is not an object"),
    ],
    ids=[
        "object",
        "no-version",
        "unknown-field",
        "bad-purl",
        "bad-type",
        "empty-name",
        "newline",
        "int",
        "item",
    ],
)
def test_bad_component_lists_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_components(raw)


def test_a_component_list_is_read() -> None:
    raw = json.dumps(
        [
            {"name": "zephyr", "version": "3.7.0", "purl": "pkg:github/zephyrproject-rtos/zephyr@v3.7.0"},
            {"name": "blob", "version": "7", "license": "MIT", "type": "firmware"},
        ]
    ).encode()
    assert parse_components(raw) == (
        ComponentSpec("zephyr", "3.7.0", purl="pkg:github/zephyrproject-rtos/zephyr@v3.7.0"),
        ComponentSpec("blob", "7", license="MIT", type="firmware"),
    )


def test_a_component_listed_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="listed twice"):
        build(components=(ComponentSpec("a", "1"), ComponentSpec("a", "1")))
    with pytest.raises(InvalidInput, match="64 lower-case"):
        build(body_sha256="AB" * 32)
    with pytest.raises(InvalidInput, match="time zone"):
        build(timestamp=datetime(2031, 1, 1))
