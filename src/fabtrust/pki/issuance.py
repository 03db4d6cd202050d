"""The pure core of issuance: CSR checks, the rules a chain imposes, and the certificate a profile
describes. Bytes and values in, a ``CertificateBuilder`` or an exception out; time is passed in.

Rules (RFC 5280 section cited where a rule comes from it):

- A CSR is at most 64 KiB, PEM or DER, and its self-signature verifies (PKCS#10, RFC 2986 4.2).
  Its key type must be one the profile allows. Requested extensions are never copied: the subject
  and every extension come from the profile and the approved request.
- Every issuer in the chain must be a CA (4.2.1.9), valid now (4.1.2.5), not revoked, allow one
  more CA below it where the new certificate is a CA (pathLenConstraint, 4.2.1.9), and permit
  every name in the request (name constraints, 4.2.1.10: URI constraints apply to the host part).
- The new certificate's validity lies inside its issuer's (issue 3: validity beyond the issuer is
  refused) and within the profile's maximum.
- Serial numbers are positive, at most 20 octets, with at least 64 random bits (4.1.2.2).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from fabtrust.crypto import der
from fabtrust.crypto.keys import KeyType, key_type_of
from fabtrust.errors import InvalidInput, PolicyViolation, VerificationFailed
from fabtrust.pki.profiles import Profile

MAX_CSR_BYTES = 64 * 1024

_ATTRIBUTES: dict[str, tuple[x509.ObjectIdentifier, int]] = {
    # name -> (OID, maximum length per RFC 5280 Appendix A upper bounds)
    "countryName": (NameOID.COUNTRY_NAME, 2),
    "organizationName": (NameOID.ORGANIZATION_NAME, 64),
    "organizationalUnitName": (NameOID.ORGANIZATIONAL_UNIT_NAME, 64),
    "commonName": (NameOID.COMMON_NAME, 64),
    "serialNumber": (NameOID.SERIAL_NUMBER, 64),
}
_ORDER = ["countryName", "organizationName", "organizationalUnitName", "commonName", "serialNumber"]
_EKU = {
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
}
_PRINTABLE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]+$")  # PrintableString (X.680 41.4)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# the common form of a certified URI, parsed without urlsplit: a lower-case http(s) scheme, a host
# of lower-case DNS characters (no userinfo, port or brackets), then a path of visible ASCII
_PLAIN_URI = re.compile(r"https?://([a-z0-9.-]+)(?:/[\x21-\x7e]*)?")


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PKCS#10 request (PEM or DER) and verify its self-signature."""
    return load_csr_and_key(data)[0]


@dataclass(frozen=True)
class VerifiedCsr:
    """A certificate request whose self-signature its holder has verified, with its public key.

    Issuance takes it as it is instead of parsing and verifying the request again (a station has
    verified the device's request while checking the chip's genuineness). Make one only from a
    request whose signature you have checked: :func:`load_csr_and_key` or ``is_signature_valid``.
    """

    csr: x509.CertificateSigningRequest
    key: CertificatePublicKeyTypes
    # ``key`` as cryptography encodes it (:func:`fabtrust.crypto.der.key_spki`), if the holder has
    # it at hand; the holder vouches for it as for ``key``
    spki: bytes | None = None

    @classmethod
    def of(cls, csr: x509.CertificateSigningRequest) -> VerifiedCsr:
        """For a request verified by the caller: its key, checked to be one fabtrust supports."""
        try:
            key = csr.public_key()
        except (ValueError, UnsupportedAlgorithm, TypeError):
            raise InvalidInput("certificate request uses an unsupported algorithm") from None
        return cls(csr, _supported(key))


def _supported(key: CertificatePublicKeyTypes) -> CertificatePublicKeyTypes:
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | mldsa.MLDSA65PublicKey):
        raise InvalidInput("certificate request key algorithm is not supported")
    key_type_of(key)  # refuses curves fabtrust does not know
    return key


def load_csr_and_key(data: bytes) -> tuple[x509.CertificateSigningRequest, CertificatePublicKeyTypes]:
    """``load_csr`` and the request's public key, decoded once."""
    if len(data) > MAX_CSR_BYTES:
        raise InvalidInput(f"certificate request is larger than {MAX_CSR_BYTES} bytes")
    if not data:
        raise InvalidInput("certificate request is empty")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
        valid = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm, TypeError):
        raise InvalidInput("certificate request is malformed or uses an unsupported algorithm") from None
    if not valid:
        raise VerificationFailed("certificate request signature does not verify")
    return csr, _supported(key)


def csr_key_type(
    csr: x509.CertificateSigningRequest, profile: Profile, key: CertificatePublicKeyTypes | None = None
) -> KeyType:
    """The request's key type, if the profile allows it (``key``: the CSR's key, if decoded already)."""
    key = csr.public_key() if key is None else key
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | mldsa.MLDSA65PublicKey):
        raise PolicyViolation(f"profile {profile.name} does not allow this key algorithm")
    key_type = key_type_of(key)
    if key_type not in profile.key_types:
        allowed = ", ".join(k.value for k in profile.key_types)
        raise PolicyViolation(
            f"profile {profile.name} does not allow {key_type.value} keys (allowed: {allowed})"
        )
    return key_type


@dataclass(frozen=True)
class NameRequest:
    """What the approved request asks for: subject attributes and subject alternative names, and
    for an issuing CA the URI/DNS subtrees it may name (its name constraints)."""

    attributes: Mapping[str, str]
    uris: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    permitted_uri_hosts: tuple[str, ...] = ()
    permitted_dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Urls:
    """Where relying parties find revocation status for certificates a CA issues."""

    crl: str | None = None
    ocsp: str | None = None
    ca_issuers: str | None = None


@dataclass(frozen=True)
class IssuerView:
    """An issuer in the chain, as the rules see it: its certificate and whether it was revoked."""

    certificate: x509.Certificate
    revoked: bool = False
    name: str = field(default="")

    @functools.cached_property
    def name_constraints(self) -> x509.NameConstraints | None:
        try:
            return self.certificate.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            return None

    @functools.cached_property
    def subtrees(self) -> tuple[tuple[bool, tuple[str, ...], tuple[str, ...]], ...]:
        """The name constraints as (permitted?, URI host bases, DNS bases), lower-cased once (DNS
        bases without a leading dot) for the many names checked against them."""
        nc = self.name_constraints
        if nc is None:
            return ()
        out = []
        for subtrees, permit in ((nc.permitted_subtrees, True), (nc.excluded_subtrees, False)):
            if subtrees is not None:
                uris = tuple(
                    g.value.lower() for g in subtrees if isinstance(g, x509.UniformResourceIdentifier)
                )
                dns = tuple(g.value.lower().lstrip(".") for g in subtrees if isinstance(g, x509.DNSName))
                out.append((permit, uris, dns))
        return tuple(out)

    @property
    def who(self) -> str:
        return self.name or self.certificate.subject.rfc4514_string()


# per attribute: its OID (DER), the string type cryptography's x509.NameAttribute gives it by
# default (PrintableString for countryName and serialNumber, UTF8String for the others) and its
# name in RFC 4514 strings (serialNumber has no short name there: its dotted OID)
_ENCODING: dict[str, tuple[bytes, int, str]] = {
    "countryName": (bytes.fromhex("0603550406"), 0x13, "C"),
    "organizationName": (bytes.fromhex("060355040a"), 0x0C, "O"),
    "organizationalUnitName": (bytes.fromhex("060355040b"), 0x0C, "OU"),
    "commonName": (bytes.fromhex("0603550403"), 0x0C, "CN"),
    "serialNumber": (bytes.fromhex("0603550405"), 0x13, "2.5.4.5"),
}
# RFC 4514 2.4: the characters escaped with a backslash anywhere in a value
_RFC4514_ESCAPES = str.maketrans({c: "\\" + c for c in '\\"+,;<>'} | {"\0": "\\00"})


@dataclass(frozen=True)
class Subject:
    """A certificate subject checked against a profile: its attributes in fabtrust's order
    (countryName, organizationName, organizationalUnitName, commonName, serialNumber), one per RDN.

    :meth:`der` and :meth:`rfc4514` give what ``name().public_bytes()`` and
    ``name().rfc4514_string()`` give, without building the x509.Name (bulk issuance)."""

    attributes: tuple[tuple[str, str], ...]

    def name(self) -> x509.Name:
        return x509.Name([x509.NameAttribute(_ATTRIBUTES[name][0], value) for name, value in self.attributes])

    def der(self) -> bytes:
        rdns = []
        for name, value in self.attributes:
            oid, tag, _ = _ENCODING[name]
            rdns.append(der.encode(0x31, der.encode(0x30, oid + der.encode(tag, value.encode("utf-8")))))
        return der.encode(0x30, b"".join(rdns))

    def rfc4514(self) -> str:
        """RFC 4514 2.1: the last RDN first."""
        return ",".join(
            f"{_ENCODING[name][2]}={_rfc4514_value(value)}" for name, value in reversed(self.attributes)
        )


def _rfc4514_value(value: str) -> str:
    value = value.translate(_RFC4514_ESCAPES)
    if value[0] in "# ":
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def check_subject(profile: Profile, attributes: Mapping[str, str]) -> Subject:
    """The subject ``attributes`` ask for, if ``profile`` allows it; InvalidInput or
    PolicyViolation naming the first attribute that is wrong."""
    unknown = set(attributes) - set(_ATTRIBUTES)
    if unknown:
        raise InvalidInput(f"unknown subject attributes: {', '.join(sorted(unknown))}")
    allowed = set(profile.subject.required) | set(profile.subject.optional)
    extra = set(attributes) - allowed
    if extra:
        raise PolicyViolation(f"profile {profile.name} does not allow subject {', '.join(sorted(extra))}")
    missing = [a for a in profile.subject.required if not attributes.get(a)]
    if missing:
        raise InvalidInput(f"profile {profile.name} requires subject {', '.join(missing)}")
    checked = []
    for name in _ORDER:
        value = attributes.get(name)
        if value is None:
            continue
        limit = _ATTRIBUTES[name][1]
        if not value or len(value) > limit or value != value.strip() or _CONTROL.search(value):
            raise InvalidInput(f"subject {name} must be 1-{limit} characters without control characters")
        if not value.isascii():
            try:
                encoded = value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(f"subject {name} is not valid Unicode (a lone surrogate)") from None
            if name == "commonName" and len(encoded) > limit:  # as cryptography counts it
                raise InvalidInput(f"subject commonName must be at most {limit} bytes in UTF-8")
        if name == "countryName" and not re.fullmatch(r"[A-Z]{2}", value):
            raise InvalidInput("subject countryName must be two capital letters (ISO 3166)")
        if name == "serialNumber" and not _PRINTABLE.fullmatch(value):
            raise InvalidInput("subject serialNumber must be a PrintableString")
        checked.append((name, value))
    return Subject(tuple(checked))


def subject_name(profile: Profile, attributes: Mapping[str, str]) -> x509.Name:
    """:func:`check_subject` as an ``x509.Name`` (for cryptography's builders)."""
    return check_subject(profile, attributes).name()


@functools.lru_cache(maxsize=4096)
def check_dns_name(name: str) -> str:
    """A DNS name, lower-cased, without a trailing dot; InvalidInput if it is not a host name."""
    labels = name.lower().rstrip(".").split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput(f"{name!r} is not a valid DNS name")
    return ".".join(labels)


@functools.lru_cache(maxsize=4096)
def _uri_host(uri: str) -> str:
    plain = _PLAIN_URI.fullmatch(uri) if len(uri) <= 255 else None
    if plain is not None and not plain.group(1).endswith("."):
        # what the general path below accepts and returns for these, without urlsplit: a device's
        # URI is new with every certificate, so the cache never has it
        return check_dns_name(plain.group(1))
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(uri) > 255:
        raise InvalidInput(f"{uri!r} is not an http(s) URI with a host (RFC 5280 4.2.1.10 needs a host)")
    if not _VISIBLE_ASCII.fullmatch(uri):
        raise InvalidInput(f"{uri!r} must be printable ASCII (an IA5String)")
    # RFC 5280 4.2.1.10 constrains the host part (RFC 3986 3.2.2), but relying parties find it by
    # scanning (OpenSSL: from "//" to the next ":" or "/"). Only an authority every reader splits
    # the same way is accepted: no userinfo, no trailing dot, a path or nothing after it.
    rest = uri[len(parts.scheme) + 3 + len(parts.netloc) :]
    try:
        parts.port  # noqa: B018 (a non-numeric or out-of-range port raises ValueError)
    except ValueError:
        raise InvalidInput(f"{uri!r} has an invalid port") from None
    if "@" in parts.netloc or parts.hostname.endswith(".") or (rest and not rest.startswith("/")):
        raise InvalidInput(
            f"{uri!r} must be http(s)://host[:port] followed by a path or nothing "
            "(no userinfo, trailing dot, query or fragment right after the host)"
        )
    return check_dns_name(parts.hostname)


def san_entries(profile: Profile, request: NameRequest) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    wanted = {"uri": request.uris, "dns": request.dns, "ip": request.ips}
    for kind, values in wanted.items():
        if values and kind not in profile.san:
            raise PolicyViolation(f"profile {profile.name} does not allow {kind} subject alternative names")
    for uri in request.uris:
        _uri_host(uri)
        names.append(x509.UniformResourceIdentifier(uri))
    for dns in request.dns:
        names.append(x509.DNSName(check_dns_name(dns)))
    for ip in request.ips:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise InvalidInput(f"{ip!r} is not an IP address") from None
    if not names and profile.san:
        # a device too: its URI names it (issue 3), and a certificate without one would escape the
        # issuer's name constraints, which apply only to names present (RFC 5280 4.2.1.10)
        raise InvalidInput(f"profile {profile.name} needs a subject alternative name")
    return names


def _host_within(host: str, base: str) -> bool:
    """RFC 5280 4.2.1.10: a URI constraint names a host; ".example.com" means any host below it
    (``base`` lower-cased)."""
    if base.startswith("."):
        return host.endswith(base)
    return host == base


def _dns_within(name: str, base: str) -> bool:
    """RFC 5280 4.2.1.10: a DNS constraint is satisfied by the name itself or any name below it
    (``base`` lower-cased, without a leading dot)."""
    return name == base or name.endswith("." + base)


def check_name_constraints(chain: Sequence[IssuerView], request: NameRequest) -> None:
    """Refuse any name that an issuer's name constraints do not permit (or exclude)."""
    hosts = [_uri_host(u) for u in request.uris]
    dns = [check_dns_name(d) for d in request.dns]
    for issuer in chain:
        for permit, uri_bases, dns_bases in issuer.subtrees:
            for host in hosts:
                if permit and uri_bases and not any(_host_within(host, b) for b in uri_bases):
                    raise PolicyViolation(f"URI host {host} is outside the name constraints of {issuer.who}")
                if not permit and any(_host_within(host, b) for b in uri_bases):
                    raise PolicyViolation(
                        f"URI host {host} is excluded by the name constraints of {issuer.who}"
                    )
            if not uri_bases and dns_bases:
                # fabtrust policy, stricter than RFC 5280 (which matches URIs only against URI
                # subtrees): where a CA constrains DNS names only, the hosts of the URIs it certifies
                # must lie in them too. Issuing CAs carry DNS constraints because every verifier
                # implements them (cryptography's refuses URI constraints), and this keeps URIs bound.
                for host in hosts:
                    if permit and not any(_dns_within(host, b) for b in dns_bases):
                        raise PolicyViolation(
                            f"URI host {host} is outside the name constraints of {issuer.who}"
                        )
                    if not permit and any(_dns_within(host, b) for b in dns_bases):
                        raise PolicyViolation(
                            f"URI host {host} is excluded by the name constraints of {issuer.who}"
                        )
            for name in dns:
                if permit and dns_bases and not any(_dns_within(name, b) for b in dns_bases):
                    raise PolicyViolation(f"DNS name {name} is outside the name constraints of {issuer.who}")
                if not permit and any(_dns_within(name, b) for b in dns_bases):
                    raise PolicyViolation(
                        f"DNS name {name} is excluded by the name constraints of {issuer.who}"
                    )


def check_chain(chain: Sequence[IssuerView], profile: Profile, now: datetime) -> None:
    """The issuers (nearest first) must be usable CAs now, and allow a certificate of this profile."""
    if not chain:
        raise InvalidInput("an issuer is needed")
    for depth, issuer in enumerate(chain):
        cert = issuer.certificate
        who = issuer.who
        if issuer.revoked:
            raise PolicyViolation(f"issuer {who} is revoked")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise PolicyViolation(f"issuer {who} is not valid now (expired or not yet valid)")
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            raise PolicyViolation(f"issuer {who} is not a CA") from None
        if not bc.ca:
            raise PolicyViolation(f"issuer {who} is not a CA")
        # CA certificates between this issuer and the new certificate, the new one included if a CA
        below = depth + (1 if profile.is_ca else 0)
        if bc.path_length is not None and below > bc.path_length:
            raise PolicyViolation(
                f"issuer {who} allows no further CA below it (pathLenConstraint {bc.path_length})"
            )


def validity(
    profile: Profile, issuer: x509.Certificate | None, now: datetime, not_after: datetime | None
) -> tuple[datetime, datetime]:
    """notBefore is now (to the second); notAfter as requested, at most the profile's maximum and
    never beyond the issuer's own notAfter."""
    start = now.replace(microsecond=0)
    limit = start + timedelta(days=profile.max_validity_days)
    end = limit if not_after is None else not_after.replace(microsecond=0)
    if end <= start:
        raise InvalidInput("notAfter must be later than now")
    if end > limit:
        raise PolicyViolation(
            f"profile {profile.name} allows at most {profile.max_validity_days} days of validity"
        )
    if issuer is not None:
        if not_after is None:
            end = min(end, issuer.not_valid_after_utc)
        elif end > issuer.not_valid_after_utc:
            raise PolicyViolation("validity would extend beyond the issuer's")
    return start, end


def _key_usage(names: Sequence[str]) -> x509.KeyUsage:
    flags = set(names)
    return x509.KeyUsage(
        digital_signature="digitalSignature" in flags,
        content_commitment="contentCommitment" in flags,
        key_encipherment="keyEncipherment" in flags,
        data_encipherment="dataEncipherment" in flags,
        key_agreement="keyAgreement" in flags,
        key_cert_sign="keyCertSign" in flags,
        crl_sign="cRLSign" in flags,
        encipher_only=False,
        decipher_only=False,
    )


def certificate_extensions(
    profile: Profile,
    public_key: CertificatePublicKeyTypes,
    sans: Sequence[x509.GeneralName],
    request: NameRequest,
    *,
    issuer: x509.Certificate | None,
    urls: Urls,
) -> list[tuple[x509.ExtensionType, bool]]:
    """The extensions the profile describes, in order, each with its criticality."""
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=profile.is_ca, path_length=profile.path_length), True),
        (_key_usage(profile.key_usage), True),
    ]
    if profile.extended_key_usage:
        eku = x509.ExtendedKeyUsage([_EKU[u] for u in profile.extended_key_usage])
        extensions.append((eku, False))
    extensions.append((x509.SubjectKeyIdentifier.from_public_key(public_key), False))
    if issuer is not None:
        issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski)
        extensions.append((aki, False))
    if sans:
        extensions.append((x509.SubjectAlternativeName(sans), False))
    if profile.name_constraints:
        permitted: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(h) for h in request.permitted_uri_hosts
        ]
        permitted += [x509.DNSName(check_dns_name(d)) for d in request.permitted_dns]
        if not permitted:
            raise InvalidInput(
                f"profile {profile.name} needs the names the CA may certify (name constraints)"
            )
        # RFC 5280 4.2.1.10: conforming CAs MUST mark this extension as critical. fabtrust's issuing
        # CAs carry DNS subtrees (see check_name_constraints); URI subtrees are honoured when read.
        extensions.append((x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), True))
    if issuer is not None and profile.crl_distribution_point and urls.crl:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl)], None, None, None)
        extensions.append((x509.CRLDistributionPoints([point]), False))
    access = []
    if issuer is not None and profile.ocsp and urls.ocsp:
        ocsp = x509.UniformResourceIdentifier(urls.ocsp)
        access.append(x509.AccessDescription(AuthorityInformationAccessOID.OCSP, ocsp))
    if issuer is not None and urls.ca_issuers:
        ca_issuers = x509.UniformResourceIdentifier(urls.ca_issuers)
        access.append(x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, ca_issuers))
    if access:
        extensions.append((x509.AuthorityInformationAccess(access), False))
    return extensions


def check_serial(serial: int) -> int:
    if not 0 < serial < 2**159 or serial.bit_length() < 64:
        raise InvalidInput("serial must be positive, at most 20 octets, with at least 64 random bits")
    return serial


def build_certificate(
    profile: Profile,
    subject_public_key: x509.CertificateSigningRequest | CertificatePublicKeyTypes,
    request: NameRequest,
    *,
    issuer: x509.Certificate | None,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    urls: Urls,
    subject: x509.Name | None = None,
) -> x509.CertificateBuilder:
    """The certificate the profile describes, ready to be signed by the issuer's key.

    ``issuer`` None means self-signed (the root). ``subject_public_key`` is a CSR (its key is
    used, nothing else of it) or a public key.
    """
    check_serial(serial)
    if isinstance(subject_public_key, x509.CertificateSigningRequest):
        public_key = subject_public_key.public_key()
    else:
        public_key = subject_public_key
    if subject is None:
        subject = subject_name(profile, request.attributes)
    sans = san_entries(profile, request)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension, critical in certificate_extensions(
        profile, public_key, sans, request, issuer=issuer, urls=urls
    ):
        builder = builder.add_extension(extension, critical=critical)
    return builder
