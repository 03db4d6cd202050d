"""Software bills of materials: one CycloneDX 1.6 JSON document per firmware release.

Built with cyclonedx-python-lib and validated offline against the CycloneDX 1.6 JSON schema that
ships inside that library (its ``JsonStrictValidator``, with the json-validation extra: jsonschema
and referencing). The library registers the schemas the 1.6 schema refers to (SPDX license ids, JSF,
cryptography definitions) in a local ``referencing.Registry`` with no retrieval function, so a
reference it does not hold is an error, never a download: validation needs no network.

A release's SBOM (CycloneDX 1.6, section "metadata"):

- ``metadata.component`` is the firmware itself: type ``firmware``, name = the product, version = the
  release version, and one SHA-256 hash: that of the image *body* (the firmware binary that goes into
  the MCUboot image; the signed image is built later, at publication, and its bytes differ with every
  signature and image key, while the body is what the SBOM describes);
- ``components`` are the parts the firmware is built from (name, version, optional purl, license and
  type), from a small JSON list the release manager hands in;
- ``serialNumber`` is a fresh ``urn:uuid`` (CycloneDX 1.6, "serialNumber"), ``metadata.timestamp``
  the clock's time.

:func:`validate` accepts any CycloneDX 1.6 JSON document (an SBOM from the build system, say) and
fails closed: not JSON, another ``bomFormat`` or ``specVersion``, or anything the 1.6 schema refuses
(the 1.6 schema already forbids unknown members) is :class:`InvalidInput` naming the first problem
and where it is. :func:`check_firmware` then checks that a document describes the firmware of one
release.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cyclonedx import spdx
from cyclonedx.exception import MissingOptionalDependencyException
from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, License, LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from fabtrust.errors import InvalidInput, Unavailable

SPEC_VERSION: Final = "1.6"
BOM_FORMAT: Final = "CycloneDX"
#: Largest SBOM accepted, in bytes.
MAX_SBOM: Final = 4 * 1024 * 1024
#: Most components a component list may name.
MAX_COMPONENTS: Final = 10_000
#: ``bom-ref`` of the firmware component (the metadata component).
FIRMWARE_REF: Final = "firmware"
#: Component types a component list may give (CycloneDX 1.6 ``component.type``); default library.
COMPONENT_TYPES: Final = frozenset(
    {"application", "library", "framework", "operating-system", "firmware", "device-driver", "file", "data"}
)
_COMPONENT_FIELDS: Final = frozenset({"name", "version", "purl", "license", "type"})
_MAX_TEXT = 255
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MAX_MESSAGE = 200


def _one_line(value: str, limit: int = _MAX_MESSAGE) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise InvalidInput(f"{what} must be a non-empty string of at most {_MAX_TEXT} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput(f"{what} must not contain control characters")
    return value


@dataclass(frozen=True)
class ComponentSpec:
    """One part the firmware is built from, as the release manager names it."""

    name: str
    version: str
    purl: str | None = None
    license: str | None = None
    type: str = "library"

    def __post_init__(self) -> None:
        _text(self.name, "component name")
        _text(self.version, f"version of component {self.name!r}")
        if self.type not in COMPONENT_TYPES:
            known = ", ".join(sorted(COMPONENT_TYPES))
            raise InvalidInput(f"component {self.name!r} has unknown type {self.type!r} (known: {known})")
        if self.purl is not None:
            _text(self.purl, f"purl of component {self.name!r}")
            try:
                PackageURL.from_string(self.purl)
            except ValueError:
                raise InvalidInput(f"purl of component {self.name!r} is not a valid package URL") from None
        if self.license is not None:
            _text(self.license, f"license of component {self.name!r}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput(f"duplicate member {key!r}")
        result[key] = value
    return result


def _load_json(raw: bytes, what: str) -> Any:
    if not isinstance(raw, bytes | bytearray):
        raise InvalidInput(f"{what} must be bytes")
    if len(raw) > MAX_SBOM:
        raise InvalidInput(f"{what} is larger than {MAX_SBOM} bytes")
    try:
        return json.loads(bytes(raw).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON ({exc.msg} at offset {exc.pos})") from None
    except (ValueError, RecursionError):
        raise InvalidInput(f"{what} is not valid JSON") from None


def parse_components(raw: bytes) -> tuple[ComponentSpec, ...]:
    """A component list: a JSON array of objects with ``name`` and ``version`` and optionally
    ``purl``, ``license`` (an SPDX id or expression, or a license name) and ``type``."""
    doc = _load_json(raw, "component list")
    if not isinstance(doc, list):
        raise InvalidInput("component list must be a JSON array of objects")
    if len(doc) > MAX_COMPONENTS:
        raise InvalidInput(f"component list names more than {MAX_COMPONENTS} components")
    specs = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise InvalidInput(f"component list entry {i} is not an object")
        unknown = sorted(set(item) - _COMPONENT_FIELDS)
        if unknown:
            raise InvalidInput(f"component list entry {i} has unknown fields {unknown}")
        if "name" not in item or "version" not in item:
            raise InvalidInput(f"component list entry {i} needs a name and a version")
        specs.append(ComponentSpec(**item))
    return tuple(specs)


def _license(value: str) -> License:
    spdx_id = spdx.fixup_id(value)
    if spdx_id is not None:
        return DisjunctiveLicense(id=spdx_id)
    if re.search(r"\s(AND|OR|WITH)\s", value):
        return LicenseExpression(value)
    return DisjunctiveLicense(name=value)


def build_sbom(
    *,
    product: str,
    version: str,
    body_sha256: str,
    components: Sequence[ComponentSpec],
    timestamp: datetime,
    serial: uuid.UUID | None = None,
) -> bytes:
    """The release's CycloneDX 1.6 JSON document (validated before it is returned)."""
    _text(product, "product")
    _text(version, "version")
    if not isinstance(body_sha256, str) or not _SHA256_HEX.fullmatch(body_sha256):
        raise InvalidInput("the firmware body hash must be 64 lower-case hexadecimal digits")
    if timestamp.tzinfo is None:
        raise InvalidInput("the SBOM timestamp must carry a time zone")
    if len(components) > MAX_COMPONENTS:
        raise InvalidInput(f"an SBOM names at most {MAX_COMPONENTS} components")
    seen: set[tuple[str, str]] = set()
    for spec in components:
        if (spec.name, spec.version) in seen:
            raise InvalidInput(f"component {spec.name} {spec.version} is listed twice")
        seen.add((spec.name, spec.version))

    bom = Bom(serial_number=serial or uuid.uuid4())
    bom.metadata.timestamp = timestamp
    firmware = Component(
        type=ComponentType.FIRMWARE,
        name=product,
        version=version,
        bom_ref=FIRMWARE_REF,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=body_sha256)],
    )
    bom.metadata.component = firmware
    parts = []
    for i, spec in enumerate(components, start=1):
        part = Component(
            type=ComponentType(spec.type),
            name=spec.name,
            version=spec.version,
            bom_ref=f"component-{i}",
            purl=PackageURL.from_string(spec.purl) if spec.purl is not None else None,
            licenses=[_license(spec.license)] if spec.license is not None else None,
        )
        bom.components.add(part)
        parts.append(part)
    bom.register_dependency(firmware, parts)
    document = JsonV1Dot6(bom).output_as_string(indent=2).encode("utf-8") + b"\n"
    validate(document)
    return document


@functools.cache
def _validator() -> JsonStrictValidator:
    # Immutable once built; built once per process (loading the 1.6 schema takes tens of ms).
    return JsonStrictValidator(SchemaVersion.V1_6)


def _location(path: Sequence[object]) -> str:
    return "/" + "/".join(str(p) for p in path) if path else "the document"


def validate(sbom: bytes) -> dict[str, Any]:
    """Check a CycloneDX 1.6 JSON document offline; return it parsed, or raise InvalidInput naming
    the first problem and where it is."""
    doc = _load_json(sbom, "SBOM")
    if not isinstance(doc, dict):
        raise InvalidInput("SBOM is not a JSON object")
    if doc.get("bomFormat") != BOM_FORMAT:
        raise InvalidInput(f"SBOM is not a CycloneDX document (bomFormat must be {BOM_FORMAT!r})")
    if doc.get("specVersion") != SPEC_VERSION:
        found = doc.get("specVersion")
        shown = repr(found) if isinstance(found, str) and len(found) <= 16 else "missing or malformed"
        raise InvalidInput(f"SBOM specVersion is {shown}; fabtrust accepts CycloneDX {SPEC_VERSION} only")
    try:
        from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

        errors = _validator().validate_str(bytes(sbom).decode("utf-8"), all_errors=True)
    except (ImportError, MissingOptionalDependencyException) as exc:
        raise Unavailable(
            "SBOM validation needs cyclonedx-python-lib's json-validation extra (jsonschema)"
        ) from exc
    if errors is not None:
        first = best_match(e.data for e in errors)
        if first is not None:
            where = _location(list(first.absolute_path))
            raise InvalidInput(
                f"SBOM does not conform to CycloneDX {SPEC_VERSION} at {where}: {_one_line(first.message)}"
            )
    return doc


def check_firmware(doc: Mapping[str, Any], *, product: str, version: str, body_sha256: str) -> None:
    """A validated SBOM must describe this release's firmware: ``metadata.component`` of type
    firmware, named after the product, with the release version and the body's SHA-256."""
    metadata = doc.get("metadata")
    component = metadata.get("component") if isinstance(metadata, dict) else None
    if not isinstance(component, dict):
        raise InvalidInput("SBOM has no metadata.component describing the firmware")
    if component.get("type") != "firmware":
        raise InvalidInput("SBOM metadata.component is not of type firmware")
    if component.get("name") != product:
        raise InvalidInput(
            f"SBOM describes firmware {_one_line(str(component.get('name')), 60)!r}, not {product!r}"
        )
    if component.get("version") != version:
        raise InvalidInput(
            f"SBOM describes version {_one_line(str(component.get('version')), 60)!r}, not {version!r}"
        )
    hashes = component.get("hashes")
    sha256 = [
        h.get("content", "").lower()
        for h in (hashes if isinstance(hashes, list) else [])
        if isinstance(h, dict) and h.get("alg") == "SHA-256" and isinstance(h.get("content"), str)
    ]
    if not sha256:
        raise InvalidInput("SBOM metadata.component carries no SHA-256 hash of the firmware")
    if any(h != body_sha256 for h in sha256):
        raise InvalidInput("SBOM firmware SHA-256 is not the hash of this release's firmware body")
