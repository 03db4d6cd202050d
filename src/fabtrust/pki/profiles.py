"""Certificate profiles are data: JSON documents (``fabtrust.cert-profile/v1``) shipped in
``fabtrust/pki/profiles/``, validated strictly on load (unknown fields, usages or key types are
errors). The issuance code reads nothing about a certificate's shape from anywhere else.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fabtrust.crypto.keys import KeyType
from fabtrust.errors import InvalidInput, NotFound

PROFILE_FORMAT = "fabtrust.cert-profile/v1"

KeyUsageName = Literal[
    "digitalSignature",
    "contentCommitment",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
]
ExtendedKeyUsageName = Literal["clientAuth", "serverAuth", "OCSPSigning", "codeSigning"]
SubjectAttribute = Literal[
    "commonName", "organizationName", "organizationalUnitName", "countryName", "serialNumber"
]
SanType = Literal["uri", "dns", "ip"]
Kind = Literal["root-ca", "product-ca", "issuing-ca", "end-entity"]


class SubjectRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    required: tuple[SubjectAttribute, ...]
    optional: tuple[SubjectAttribute, ...] = ()


class Profile(BaseModel):
    """What a certificate of this profile looks like and what a request may ask for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["fabtrust.cert-profile/v1"]
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,40}$")
    description: str
    kind: Kind
    key_types: tuple[KeyType, ...] = Field(min_length=1)
    max_validity_days: int = Field(ge=0, le=36500)
    path_length: int | None = Field(default=None, ge=0, le=8)
    key_usage: tuple[KeyUsageName, ...] = Field(min_length=1)
    extended_key_usage: tuple[ExtendedKeyUsageName, ...] = ()
    subject: SubjectRule
    san: tuple[SanType, ...] = ()
    crl_distribution_point: bool = False
    ocsp: bool = False
    name_constraints: bool = False
    # the kinds of CA that may issue certificates of this profile (empty: any CA)
    issuers: tuple[Kind, ...] = ()

    @property
    def is_ca(self) -> bool:
        return self.kind != "end-entity"

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        ca_usages = {"keyCertSign", "cRLSign"}
        if self.is_ca:
            if self.path_length is None:
                raise ValueError("a CA profile needs a path_length")
            if not ca_usages <= set(self.key_usage) or self.extended_key_usage:
                raise ValueError("a CA profile has keyCertSign and cRLSign and no extended key usage")
            if self.max_validity_days < 1:
                raise ValueError("a CA profile needs max_validity_days")
        else:
            if self.path_length is not None or ca_usages & set(self.key_usage) or self.name_constraints:
                raise ValueError("an end-entity profile cannot carry CA powers")
            if self.max_validity_days < 1:
                raise ValueError("an end-entity profile needs max_validity_days")
        if "end-entity" in self.issuers:
            raise ValueError("only a CA can issue certificates")
        overlap = set(self.subject.required) & set(self.subject.optional)
        if overlap:
            raise ValueError(f"subject attributes both required and optional: {sorted(overlap)}")
        return self


def parse_profile(raw: bytes) -> Profile:
    try:
        return Profile.model_validate(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("profile is not valid JSON") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "profile"
        raise InvalidInput(f"invalid profile ({where}: {first.get('msg')})") from None


class Profiles:
    """The profiles shipped with fabtrust, by name."""

    def __init__(self, profiles: dict[str, Profile]) -> None:
        self._profiles = profiles

    @classmethod
    def builtin(cls) -> Profiles:
        found: dict[str, Profile] = {}
        for entry in resources.files("fabtrust.pki").joinpath("profiles").iterdir():
            if entry.name.endswith(".json"):
                profile = parse_profile(entry.read_bytes())
                if f"{profile.name}.json" != entry.name:
                    raise InvalidInput(f"profile file {entry.name} holds profile {profile.name!r}")
                found[profile.name] = profile
        return cls(found)

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            known = ", ".join(sorted(self._profiles))
            raise NotFound(f"no certificate profile {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._profiles)
