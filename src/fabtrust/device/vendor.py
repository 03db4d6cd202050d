"""A simulated silicon vendor: a root CA, a birth CA, and chips with birth certificates.

Used by tests and the demo in place of a real vendor's factory. The vendor's CA keys are software
keys here (a real vendor keeps them in its HSM); a chip's birth key is generated inside its
:class:`SecureElement` and the vendor only ever sees the public key.

Birth certificates follow IEEE 802.1AR (IDevID): subject O = vendor, serialNumber = chip UID; valid
from manufacture with no well-defined expiry, notAfter 99991231235959Z (IEEE 802.1AR-2018 8.5,
RFC 5280 4.1.2.5).

It can also make the bad chips tests need: :meth:`SiliconVendor.clone` (a perfect clone, as if the
birth key had been extracted) and :meth:`SiliconVendor.forge_uid` (a counterfeit that copies a UID
and birth certificate but holds its own key). A chip of an unknown vendor is simply
``SiliconVendor("Other Fab", now=...).make_chip()``.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from fabtrust.crypto.keys import KeyType, generate_private_key, load_public_key
from fabtrust.device.element import BIRTH_SLOT, SecureElement
from fabtrust.errors import InvalidInput

#: IEEE 802.1AR-2018 8.5 / RFC 5280 4.1.2.5: "no well-defined expiration date".
NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
ROOT_LIFETIME = timedelta(days=25 * 365)
BIRTH_CA_LIFETIME = timedelta(days=20 * 365)
_VENDOR_KEY_TYPES = (KeyType.P256, KeyType.ED25519)  # the element can hold these as birth keys

_CaKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _ca_key(key_type: KeyType) -> _CaKey:
    key = generate_private_key(key_type)
    assert isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
    return key


def _hash_for(key: _CaKey) -> hashes.SHA256 | None:
    return hashes.SHA256() if isinstance(key, ec.EllipticCurvePrivateKey) else None


class SiliconVendor:
    """A vendor root CA and the intermediate "birth CA" it signs, both valid from ``now``."""

    def __init__(self, name: str, *, now: datetime, key_type: KeyType = KeyType.P256) -> None:
        if not isinstance(name, str) or not 0 < len(name) <= 64 or not name.isprintable():
            raise InvalidInput("vendor name must be 1 to 64 printable characters")  # ub-organization-name
        if now.tzinfo is None:
            raise InvalidInput("time must be timezone-aware")
        if key_type not in _VENDOR_KEY_TYPES:
            raise InvalidInput(
                f"a simulated vendor uses {' or '.join(k.value for k in _VENDOR_KEY_TYPES)} keys"
            )
        self.name = name
        self.key_type = key_type
        self._now = now.astimezone(UTC).replace(microsecond=0)
        self._root_key = _ca_key(key_type)
        self._birth_ca_key = _ca_key(key_type)

        root_name = self._vendor_name(f"{name} Root CA")
        self.root: x509.Certificate = self._issue(
            subject=root_name,
            public_key=self._root_key.public_key(),
            issuer=root_name,
            issuer_key=self._root_key,
            not_after=self._now + ROOT_LIFETIME,
            ca_path_length=1,
            issuer_certificate=None,
        )
        self.birth_ca: x509.Certificate = self._issue(
            subject=self._vendor_name(f"{name} Birth CA"),
            public_key=self._birth_ca_key.public_key(),
            issuer=root_name,
            issuer_key=self._root_key,
            not_after=self._now + BIRTH_CA_LIFETIME,
            ca_path_length=0,
            issuer_certificate=self.root,
        )

    # A simulated vendor can be kept between runs for line tests (``fabtrust vendor create`` and
    # ``station provision``): its birth CA key in clear PKCS#8. Test-only by nature: a real vendor's
    # birth CA lives in the vendor's HSM and never in a file.
    STATE_FORMAT = "fabtrust.simulated-vendor/v1"

    def export_state(self) -> bytes:
        """What ``load_state`` needs to make more chips: name, time, certificates, birth CA key."""
        key = self._birth_ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        pem = serialization.Encoding.PEM
        return b"".join(
            [
                f"# {self.STATE_FORMAT} ".encode()
                + json.dumps(
                    {"name": self.name, "key": self.key_type.value, "now": self._now.isoformat()}
                ).encode()
                + b"\n",
                self.root.public_bytes(pem),
                self.birth_ca.public_bytes(pem),
                key,
            ]
        )

    @classmethod
    def load_state(cls, raw: bytes) -> SiliconVendor:
        """A vendor from ``export_state`` (it can make chips; its root key is not kept)."""
        try:
            header, _, rest = raw.partition(b"\n")
            prefix = f"# {cls.STATE_FORMAT} ".encode()
            if not header.startswith(prefix):
                raise ValueError
            fields = json.loads(header[len(prefix) :])
            certs = x509.load_pem_x509_certificates(rest)
            key = serialization.load_pem_private_key(rest[rest.index(b"-----BEGIN PRIVATE KEY") :], None)
            key_type = KeyType.parse(fields["key"])
            now = datetime.fromisoformat(fields["now"])
            name = str(fields["name"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, InvalidInput):
            raise InvalidInput(f"not a {cls.STATE_FORMAT} file") from None
        if len(certs) != 2 or not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise InvalidInput(f"not a {cls.STATE_FORMAT} file")
        vendor = cls.__new__(cls)
        vendor.name, vendor.key_type, vendor._now = name, key_type, now.astimezone(UTC)
        vendor.root, vendor.birth_ca = certs
        vendor._birth_ca_key = key
        vendor._root_key = None  # type: ignore[assignment]  # not kept: no new birth CA
        if (
            load_public_key(
                key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            != vendor.birth_ca.public_key()
        ):
            raise InvalidInput("the birth CA key does not belong to the birth CA certificate")
        return vendor

    def __repr__(self) -> str:
        return f"SiliconVendor(name={self.name!r}, key_type={self.key_type.value})"

    def _vendor_name(self, common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def _issue(
        self,
        *,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
        issuer: x509.Name,
        issuer_key: _CaKey,
        not_after: datetime,
        ca_path_length: int | None,
        issuer_certificate: x509.Certificate | None,
    ) -> x509.Certificate:
        is_ca = ca_path_length is not None
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=ca_path_length), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not is_ca,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=is_ca,
                    crl_sign=is_ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        authority = issuer_certificate.public_key() if issuer_certificate is not None else public_key
        if isinstance(authority, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), critical=False
            )
        return builder.sign(issuer_key, _hash_for(issuer_key))

    def make_chip(self, uid: str | None = None) -> SecureElement:
        """A new chip: random 64-bit UID unless given, birth key generated in its element, birth
        certificate from the birth CA; its chain is (birth certificate, birth CA)."""
        element = SecureElement(uid if uid is not None else secrets.token_hex(8))
        birth_public = load_public_key(element.generate_key(BIRTH_SLOT, self.key_type))
        assert isinstance(birth_public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
        birth = self._issue(
            subject=x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, element.uid),
                ]
            ),
            public_key=birth_public,
            issuer=self.birth_ca.subject,
            issuer_key=self._birth_ca_key,
            not_after=NO_EXPIRY,
            ca_path_length=None,
            issuer_certificate=self.birth_ca,
        )
        element.set_birth_chain(
            (
                birth.public_bytes(serialization.Encoding.DER),
                self.birth_ca.public_bytes(serialization.Encoding.DER),
            )
        )
        return element

    def clone(self, chip: SecureElement) -> SecureElement:
        """A perfect clone of ``chip``: same UID, birth key and birth chain, as if the key had been
        extracted. Genuineness checks cannot tell it apart; duplicate UIDs are the station's job."""
        return chip._physical_clone()

    def forge_uid(self, chip: SecureElement) -> SecureElement:
        """A counterfeit that copies ``chip``'s UID and birth chain but holds its own birth key, so
        its signatures do not verify under the birth certificate."""
        forged = SecureElement(chip.uid)
        forged.generate_key(BIRTH_SLOT, self.key_type)
        forged.set_birth_chain(chip.birth_chain)
        return forged
