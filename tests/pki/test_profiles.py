"""Certificate profiles are data: the shipped profiles say what issue 3 asks of each certificate, and
the loader refuses anything it does not understand (fail closed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fabtrust.crypto.keys import KeyType
from fabtrust.errors import InvalidInput, NotFound
from fabtrust.pki.profiles import Profile, Profiles, parse_profile

BUILTIN = Profiles.builtin()


def test_the_shipped_profiles_are_the_hierarchy_of_issue_3() -> None:
    assert BUILTIN.names() == ["device-idevid", "issuing-ca", "product-ca", "root-ca", "station"]
    kinds = {name: BUILTIN.get(name).kind for name in BUILTIN.names()}
    assert kinds == {
        "root-ca": "root-ca",
        "product-ca": "product-ca",
        "issuing-ca": "issuing-ca",
        "device-idevid": "end-entity",
        "station": "end-entity",
    }


def test_device_profile_is_idevid_style() -> None:
    device = BUILTIN.get("device-idevid")
    assert device.subject.required == ("serialNumber", "organizationName")  # serialNumber = device serial
    assert device.san == ("uri", "dns")  # the device id as a URI and in DNS form under its product
    assert device.key_usage == ("digitalSignature",)
    assert device.extended_key_usage == ("clientAuth",)
    assert device.crl_distribution_point
    assert device.ocsp
    assert set(device.key_types) == {KeyType.P256, KeyType.P384, KeyType.ED25519, KeyType.MLDSA65}
    assert not device.is_ca
    assert device.path_length is None
    assert not device.name_constraints


def test_station_profile_serves_and_connects() -> None:
    station = BUILTIN.get("station")
    assert set(station.extended_key_usage) == {"clientAuth", "serverAuth"}
    assert "dns" in station.san
    assert KeyType.MLDSA65 not in station.key_types  # TLS peers cannot use ML-DSA yet
    assert station.crl_distribution_point
    assert station.ocsp


@pytest.mark.parametrize(
    ("name", "path_length", "name_constraints"),
    [
        pytest.param("root-ca", 2, False, id="root"),
        pytest.param("product-ca", 1, False, id="product"),
        pytest.param("issuing-ca", 0, True, id="issuing"),
    ],
)
def test_ca_profiles(name: str, path_length: int, name_constraints: bool) -> None:
    profile = BUILTIN.get(name)
    assert profile.is_ca
    assert profile.path_length == path_length
    assert profile.name_constraints is name_constraints
    assert set(profile.key_usage) == {"keyCertSign", "cRLSign"}
    assert profile.extended_key_usage == ()
    # CA keys sign through the key store with ECDSA; ML-DSA CA keys are not offered
    assert set(profile.key_types) <= {KeyType.P256, KeyType.P384}


def test_root_has_no_revocation_pointers_and_issuers_below_it_do() -> None:
    root = BUILTIN.get("root-ca")
    assert not root.crl_distribution_point  # nobody above it to ask
    assert not root.ocsp
    for name in ("product-ca", "issuing-ca", "device-idevid", "station"):
        profile = BUILTIN.get(name)
        assert profile.crl_distribution_point, name
        assert profile.ocsp, name


def test_issuing_ca_lives_inside_an_order_window() -> None:
    assert BUILTIN.get("issuing-ca").max_validity_days <= 400
    assert BUILTIN.get("issuing-ca").max_validity_days < BUILTIN.get("product-ca").max_validity_days
    assert BUILTIN.get("product-ca").max_validity_days < BUILTIN.get("root-ca").max_validity_days


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(NotFound, match=r"no certificate profile 'rsa-server' \(known: device-idevid, "):
        BUILTIN.get("rsa-server")


# -- strict loading --------------------------------------------------------------------------------

VALID_EE: dict[str, Any] = {
    "format": "fabtrust.cert-profile/v1",
    "name": "test-ee",
    "description": "a test end-entity profile",
    "kind": "end-entity",
    "key_types": ["ecdsa-p256"],
    "max_validity_days": 30,
    "key_usage": ["digitalSignature"],
    "extended_key_usage": ["clientAuth"],
    "subject": {"required": ["commonName"], "optional": []},
    "san": ["dns"],
}
VALID_CA: dict[str, Any] = {
    "format": "fabtrust.cert-profile/v1",
    "name": "test-ca",
    "description": "a test CA profile",
    "kind": "product-ca",
    "key_types": ["ecdsa-p384"],
    "max_validity_days": 365,
    "path_length": 0,
    "key_usage": ["keyCertSign", "cRLSign"],
    "subject": {"required": ["commonName"]},
}


def test_a_minimal_profile_loads() -> None:
    assert parse_profile(json.dumps(VALID_EE).encode()).name == "test-ee"
    assert parse_profile(json.dumps(VALID_CA).encode()).path_length == 0


@pytest.mark.parametrize(
    ("base", "change", "message"),
    [
        pytest.param(VALID_EE, {"format": "fabtrust.cert-profile/v2"}, "format", id="newer-format"),
        pytest.param(VALID_EE, {"copy_extensions": True}, "copy_extensions", id="unknown-field"),
        pytest.param(VALID_EE, {"key_types": ["rsa-2048"]}, "key_types", id="unknown-key-type"),
        pytest.param(VALID_EE, {"key_types": []}, "key_types", id="no-key-types"),
        pytest.param(VALID_EE, {"key_usage": ["signEverything"]}, "key_usage", id="unknown-key-usage"),
        pytest.param(
            VALID_EE, {"extended_key_usage": ["anyExtendedKeyUsage"]}, "extended_key_usage", id="any-eku"
        ),
        pytest.param(VALID_EE, {"san": ["email"]}, "san", id="unknown-san-type"),
        pytest.param(VALID_EE, {"name": "Upper_Case"}, "name", id="bad-name"),
        pytest.param(VALID_EE, {"kind": "sub-ca"}, "kind", id="unknown-kind"),
        pytest.param(VALID_EE, {"max_validity_days": 0}, "max_validity_days", id="ee-no-validity"),
        pytest.param(VALID_EE, {"max_validity_days": 40000}, "max_validity_days", id="validity-too-long"),
        pytest.param(VALID_EE, {"path_length": 0}, "CA powers", id="ee-with-path-length"),
        pytest.param(
            VALID_EE,
            {"key_usage": ["digitalSignature", "keyCertSign"]},
            "CA powers",
            id="ee-with-keycertsign",
        ),
        pytest.param(VALID_EE, {"name_constraints": True}, "CA powers", id="ee-with-name-constraints"),
        pytest.param(
            VALID_EE,
            {"subject": {"required": ["commonName"], "optional": ["commonName"]}},
            "both required and optional",
            id="subject-overlap",
        ),
        pytest.param(
            VALID_EE, {"subject": {"required": ["emailAddress"]}}, "subject", id="unknown-subject-attribute"
        ),
        pytest.param(VALID_CA, {"path_length": None}, "path_length", id="ca-without-path-length"),
        pytest.param(VALID_CA, {"path_length": 9}, "path_length", id="ca-path-length-too-long"),
        pytest.param(
            VALID_CA, {"key_usage": ["keyCertSign"]}, "keyCertSign and cRLSign", id="ca-without-crlsign"
        ),
        pytest.param(
            VALID_CA, {"extended_key_usage": ["serverAuth"]}, "no extended key usage", id="ca-with-eku"
        ),
    ],
)
def test_invalid_profiles_are_refused_with_the_place(
    base: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    raw = json.dumps({**base, **change}).encode()
    with pytest.raises(InvalidInput, match="invalid profile") as err:
        parse_profile(raw)
    assert message in err.value.message


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(json.dumps(VALID_EE).encode()[:-5], id="truncated"),
    ],
)
def test_unparseable_profiles_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_profile(raw)


def test_a_non_object_profile_is_refused() -> None:
    with pytest.raises(InvalidInput, match="invalid profile"):
        parse_profile(b"[1, 2]")


def test_profiles_are_immutable() -> None:
    profile = parse_profile(json.dumps(VALID_EE).encode())
    with pytest.raises(ValueError, match="frozen"):
        profile.max_validity_days = 9999


def test_a_profile_file_must_hold_the_profile_it_is_named_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "station.json").write_text(json.dumps(VALID_EE))  # holds "test-ee"
    monkeypatch.setattr("fabtrust.pki.profiles.resources.files", lambda package: tmp_path)
    with pytest.raises(InvalidInput, match=r"station\.json holds profile 'test-ee'"):
        Profiles.builtin()


def test_shipped_profile_files_round_trip_through_the_strict_loader() -> None:
    for name in BUILTIN.names():
        profile = BUILTIN.get(name)
        again = Profile.model_validate(profile.model_dump())
        assert again == profile
