"""Wire formats: every document round-trips, and parsing fails closed with InvalidInput."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.encoding import b64
from fabtrust.device.protocol import (
    MAX_DOCUMENT_BYTES,
    Challenge,
    GenuinenessResponse,
    InstallReceipt,
    Provisioning,
    secrets_info,
    subject_serial_number,
)
from fabtrust.errors import FabtrustError, InvalidInput
from tests.device.helpers import NOW

Document = Challenge | GenuinenessResponse | Provisioning | InstallReceipt
UID = "0123456789abcdef"
DIGEST = hashlib.sha256(b"x").digest()

SAMPLES: list[Document] = [
    Challenge.new("station-1", "order-1", NOW),
    GenuinenessResponse(
        chip_uid=UID,
        nonce=bytes(range(32)),
        csr=b"csr-der",
        sealing_key=b"spki-der",
        birth_chain=(b"birth-der", b"intermediate-der"),
        signature=b"sig",
    ),
    Provisioning(
        device_serial="SN-0001",
        certificate_chain=(b"device-der",),
        sealed_secrets=b"sealed",
        image_digest=DIGEST,
        oem_key_hash=DIGEST,
    ),
    InstallReceipt(
        chip_uid=UID,
        device_serial="SN-0001",
        certificate_sha256=DIGEST,
        image_sha256=DIGEST,
        secrets_sha256=DIGEST,
        firmware_digest=DIGEST,
        firmware_version="1.2.3+0",
        security_counter=0,
        counter=1,
        signature=b"sig",
    ),
]
KINDS = [pytest.param(type(doc), doc, id=type(doc).__name__) for doc in SAMPLES]


def _obj(doc: Document) -> dict[str, Any]:
    value = json.loads(doc.to_json())
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize(("kind", "doc"), KINDS)
def test_every_format_round_trips(kind: type[Document], doc: Document) -> None:
    raw = doc.to_json()
    assert kind.parse(raw) == doc
    assert _obj(doc)["format"] == kind.FORMAT
    assert canonical_json(json.loads(raw)) == raw


def test_challenge_has_a_fresh_32_byte_nonce_and_utc_time() -> None:
    first, second = Challenge.new("s", "o", NOW), Challenge.new("s", "o", NOW)
    assert len(first.nonce) == 32
    assert first.nonce != second.nonce
    assert first.issued_at == "2026-03-01T12:00:00Z"


def test_signed_payload_is_the_document_without_its_signature() -> None:
    response = SAMPLES[1]
    assert isinstance(response, GenuinenessResponse)
    expected = _obj(response)
    del expected["signature"]
    assert response.signed_payload() == canonical_json(expected)


@settings(max_examples=200, deadline=None)
@given(
    chain=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=8),
    csr=st.binary(min_size=1, max_size=60),
    signature=st.binary(min_size=1, max_size=80),
    uid=st.text("0123456789abcdef", min_size=16, max_size=16),
)
def test_a_parsed_response_signs_what_a_built_one_signs(
    chain: list[bytes], csr: bytes, signature: bytes, uid: str
) -> None:
    """A parsed response takes its signed payload from the received bytes, not a new encoding:
    it is exactly what the document encodes without its signature."""
    built = GenuinenessResponse(uid, bytes(32), csr, b"spki", tuple(chain), signature)
    parsed = GenuinenessResponse.parse(built.to_json())
    assert parsed == built
    expected = _obj(built)
    del expected["signature"]
    assert parsed.signed_payload() == built.signed_payload() == canonical_json(expected)


def test_secrets_info_binds_the_chip_uid() -> None:
    assert secrets_info(UID) == b"fabtrust device secrets v1|" + UID.encode()


def _next_version(fmt: str) -> str:
    name, version = fmt.rsplit("/v", 1)
    return f"{name}/v{int(version) + 1}"


def test_the_receipt_is_v2_and_v1_is_refused() -> None:
    receipt = SAMPLES[3]
    assert receipt.FORMAT == "fabtrust.install-receipt/v2"
    obj = _obj(receipt)
    old = {
        k: v for k, v in obj.items() if k not in ("firmware_digest", "firmware_version", "security_counter")
    }
    with pytest.raises(InvalidInput, match=r"is not a fabtrust\.install-receipt/v2"):
        InstallReceipt.parse(canonical_json({**old, "format": "fabtrust.install-receipt/v1"}))


def _mutations(doc: Document) -> list[Any]:
    obj = _obj(doc)
    field = next(name for name in obj if name != "format")
    binary = next(
        name for name, v in obj.items() if name != "format" and isinstance(v, str) and v.endswith("=")
    )
    other = SAMPLES[(SAMPLES.index(doc) + 1) % len(SAMPLES)]
    cases = [
        ("unknown-member", canonical_json({**obj, "extra": "x"}), "unknown member 'extra'"),
        ("missing-member", canonical_json({k: v for k, v in obj.items() if k != field}), "lacks member"),
        ("wrong-format", canonical_json({**obj, "format": other.FORMAT}), "is not a"),
        ("format-next", canonical_json({**obj, "format": _next_version(doc.FORMAT)}), "is not a"),
        ("no-format", canonical_json({k: v for k, v in obj.items() if k != "format"}), "is not a"),
        ("bad-base64", canonical_json({**obj, binary: "!!!!"}), "not valid base64"),
        ("non-ascii-base64", canonical_json({**obj, binary: "\u00e9A=="}), "not valid base64"),
        ("slack-base64", canonical_json({**obj, binary: obj[binary][:-2] + "B="}), "base64"),
        ("number-for-text", canonical_json({**obj, field: 7}), "must be|not a base64"),
        ("truncated", doc.to_json()[:-1], "not valid JSON"),
        ("not-canonical", json.dumps(obj, indent=1).encode(), "canonical"),
        ("array", b"[]", "JSON object"),
        ("empty", b"", "not valid JSON"),
        ("oversize", b" " * (MAX_DOCUMENT_BYTES + 1), "larger than"),
    ]
    return [
        pytest.param(type(doc), raw, message, id=f"{type(doc).__name__}/{name}")
        for name, raw, message in cases
    ]


@pytest.mark.parametrize(("kind", "raw", "message"), [case for doc in SAMPLES for case in _mutations(doc)])
def test_malformed_documents_are_refused(kind: type[Document], raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        kind.parse(raw)


def _replace(doc: Document, **members: Any) -> bytes:
    return canonical_json({**_obj(doc), **members})


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        pytest.param(
            Challenge, _replace(SAMPLES[0], nonce=b64(b"short")), "32 bytes", id="challenge/short-nonce"
        ),
        pytest.param(
            Challenge, _replace(SAMPLES[0], issued_at="2026-03-01 12:00:00"), "RFC 3339", id="challenge/time"
        ),
        pytest.param(
            Challenge,
            _replace(SAMPLES[0], issued_at="2026-02-30T12:00:00Z"),
            "not a valid",
            id="challenge/feb30",
        ),
        pytest.param(Challenge, _replace(SAMPLES[0], station=""), "printable", id="challenge/empty-station"),
        pytest.param(
            GenuinenessResponse,
            _replace(SAMPLES[1], chip_uid="0123456789ABCDEF"),
            "lowercase hex",
            id="response/uid-case",
        ),
        pytest.param(
            GenuinenessResponse, _replace(SAMPLES[1], birth_chain=[]), "1 to 8", id="response/empty-chain"
        ),
        pytest.param(
            GenuinenessResponse, _replace(SAMPLES[1], birth_chain="x"), "array", id="response/chain-not-array"
        ),
        pytest.param(
            GenuinenessResponse, _replace(SAMPLES[1], signature=""), "non-empty", id="response/no-signature"
        ),
        pytest.param(
            Provisioning,
            _replace(SAMPLES[2], image_digest=b64(b"\x00" * 31)),
            "32 bytes",
            id="provisioning/digest",
        ),
        pytest.param(
            Provisioning,
            _replace(SAMPLES[2], device_serial="SN_1"),
            "PrintableString",
            id="provisioning/serial",
        ),
        pytest.param(
            InstallReceipt, _replace(SAMPLES[3], counter=True), "integer", id="receipt/bool-counter"
        ),
        pytest.param(InstallReceipt, _replace(SAMPLES[3], counter=0), "from 1", id="receipt/zero-counter"),
        pytest.param(InstallReceipt, _replace(SAMPLES[3], counter="1"), "integer", id="receipt/text-counter"),
        pytest.param(
            InstallReceipt,
            _replace(SAMPLES[3], security_counter=-1),
            "security_counter must be",
            id="receipt/negative-security-counter",
        ),
        pytest.param(
            InstallReceipt,
            _replace(SAMPLES[3], security_counter=2**32),
            "security_counter must be",
            id="receipt/security-counter-over-u32",
        ),
        pytest.param(
            InstallReceipt,
            _replace(SAMPLES[3], firmware_digest=b64(b"\x00" * 31)),
            "32 bytes",
            id="receipt/short-firmware-digest",
        ),
        pytest.param(
            InstallReceipt,
            _replace(SAMPLES[3], firmware_version="1.2.3"),
            "written in full",
            id="receipt/short-version",
        ),
        pytest.param(
            InstallReceipt,
            _replace(SAMPLES[3], firmware_version="1.2.x"),
            "version must",
            id="receipt/bad-version",
        ),
        pytest.param(
            InstallReceipt,
            _replace(SAMPLES[3], firmware_version="256.0.0+0"),
            "major must be",
            id="receipt/version-out-of-range",
        ),
    ],
)
def test_out_of_range_values_are_refused(kind: type[Document], raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        kind.parse(raw)


def test_time_must_be_timezone_aware() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        Challenge.new("s", "o", NOW.replace(tzinfo=None))


PARSERS: list[Callable[[bytes], Document]] = [
    Challenge.parse,
    GenuinenessResponse.parse,
    Provisioning.parse,
    InstallReceipt.parse,
]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=512))
def test_random_bytes_raise_only_fabtrust_errors(raw: bytes) -> None:
    for parse in PARSERS:
        try:
            document = parse(raw)
        except FabtrustError:
            continue
        assert document.to_json() == raw  # whatever parses is canonical: one document, one encoding


@settings(max_examples=150, deadline=None)
@given(doc=st.sampled_from(SAMPLES), member=st.text(max_size=20), value=_json_values, data=st.data())
def test_random_member_values_raise_only_fabtrust_errors(
    doc: Document, member: str, value: Any, data: Any
) -> None:
    obj = _obj(doc)
    name = data.draw(st.sampled_from([*obj, member]))
    try:
        raw = canonical_json({**obj, name: value})
    except FabtrustError:
        return
    try:
        parsed = type(doc).parse(raw)
    except FabtrustError:
        return
    assert parsed.to_json() == raw


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        pytest.param([("SN-1", _ASN1Type.PrintableString)], "SN-1", id="ok/printable"),
        pytest.param([("SN-1", _ASN1Type.UTF8String)], "SN-1", id="ok/utf8"),
        pytest.param([("SN-1", _ASN1Type.BMPString)], None, id="fail/bmp"),
        pytest.param([("SN-1", _ASN1Type.PrintableString)] * 2, None, id="fail/two"),
        pytest.param([], None, id="fail/none"),
    ],
)
def test_a_names_serial_number_is_its_one_printable_or_utf8_serial_number(
    attributes: list[tuple[str, _ASN1Type]], expected: str | None
) -> None:
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")]
        + [x509.NameAttribute(NameOID.SERIAL_NUMBER, value, _type=kind) for value, kind in attributes]
    )
    assert subject_serial_number(name) == expected
