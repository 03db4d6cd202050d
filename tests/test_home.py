"""The data home: init/open round trips on SQLite, PostgreSQL and a SoftHSM token; refusals change nothing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fabtrust.crypto import hpke
from fabtrust.crypto.keys import KeyType, KeyUsage, spki_der, verify_signature
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotAuthorised,
    NotFound,
    Unavailable,
)
from fabtrust.home import AUDIT_KEY, LOG_KEY_PURPOSE, Home
from fabtrust.keystore.pkcs11 import Pkcs11KeyStore
from fabtrust.store.engine import Store
from fabtrust.tlog import proofs
from fabtrust.tlog.audit import AuditEntry
from fabtrust.tlog.checkpoint import open_checkpoint
from tests.fixtures.softhsm import HsmToken, SoftHsm

PASSPHRASE = "correct horse battery staple"


def passphrase() -> str:
    return PASSPHRASE


def never(what: str) -> Callable[[], str]:
    """A secret source that must not be asked (read-only work needs no secret)."""

    def source() -> str:
        raise AssertionError(f"the {what} was asked for")

    return source


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def last_entry(home: Home) -> AuditEntry:
    size = home.log.size()
    return AuditEntry.parse(home.log.entries(size - 1, size)[0])


@pytest.fixture
def home_path(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def soft_home(home_path: Path) -> Iterator[Home]:
    with Home.init(home_path, passphrase=passphrase, pin=never("PIN"), actor="tester") as home:
        yield home


# -- SQLite + soft key store ---------------------------------------------------------------------


def test_init_then_open_round_trip(home_path: Path) -> None:
    with Home.init(home_path, passphrase=passphrase, pin=never("PIN"), actor="tester") as created:
        config = created.config
        first = created.log.latest_checkpoint()
    assert config.keystore == "soft"
    assert config.database is None
    assert (home_path / "fabtrust.db").is_file()
    assert json.loads((home_path / "home.json").read_text())["format"] == "fabtrust.home/v1"
    assert PASSPHRASE not in (home_path / "home.json").read_text()

    with Home.open(home_path, passphrase=passphrase, pin=never("PIN"), actor="tester") as home:
        assert home.config == config
        cp = home.log.latest_checkpoint()
        assert cp.note == first.note
        assert cp.size == 2  # home.init and the log key's generation
        assert open_checkpoint(cp.note, home.log_verifier(), config.origin).root == cp.root
        types = [AuditEntry.parse(b) for b in home.log.entries(0, 2)]
        assert [(e.type, e.action) for e in types] == [
            ("fabtrust.audit.home/v1", "home.init"),
            (AUDIT_KEY, "key.generate"),
        ]
        assert types[1].subject == config.log_key
        assert types[1].details["purpose"] == LOG_KEY_PURPOSE
        log_key = home.keys.get(config.log_key)
        assert log_key.key_type is KeyType.ED25519
        assert types[1].details["key_id"] == log_key.key_id


def test_init_on_an_existing_home_is_a_conflict_and_changes_nothing(soft_home: Home) -> None:
    path = soft_home.path
    soft_home.close()
    before = snapshot(path)
    assert {"home.json", "fabtrust.db", "keystore/keystore.json"} <= set(before)
    with pytest.raises(Conflict, match="already exists"):
        Home.init(path, passphrase=passphrase, pin=never("PIN"))
    assert snapshot(path) == before


def test_open_of_a_missing_home_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no data home"):
        Home.open(tmp_path / "nowhere", passphrase=never("passphrase"), pin=never("PIN"))
    assert not (tmp_path / "nowhere").exists()


def _corrupt(mutate: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    def apply(raw: bytes) -> bytes:
        doc = json.loads(raw)
        mutate(doc)
        return json.dumps(doc).encode()

    return apply


CORRUPT_HOME_JSON = [
    pytest.param(lambda raw: raw[: len(raw) // 2], "not valid JSON", id="truncated"),
    pytest.param(lambda raw: b"\xff\xfe" + raw, "not valid JSON", id="not-utf8"),
    pytest.param(lambda raw: b"[]", "not a fabtrust.home/v1", id="not-an-object"),
    pytest.param(
        _corrupt(lambda d: d.update(format="fabtrust.home/v9")), "not a fabtrust.home/v1", id="newer-format"
    ),
    pytest.param(_corrupt(lambda d: d.pop("log_key")), "missing or unknown", id="missing-field"),
    pytest.param(_corrupt(lambda d: d.update(extra=1)), "missing or unknown", id="unknown-field"),
    pytest.param(_corrupt(lambda d: d.update(origin=7)), "wrong type", id="origin-not-a-string"),
    pytest.param(_corrupt(lambda d: d.update(database=["x"])), "wrong type", id="database-not-a-string"),
    pytest.param(
        _corrupt(lambda d: d.update(log_public_key="zz" * 32)), "log_public_key", id="public-key-not-hex"
    ),
    pytest.param(
        _corrupt(lambda d: d.update(log_public_key="ab" * 31)), "log_public_key", id="public-key-short"
    ),
]


@pytest.mark.parametrize(("mutate", "message"), CORRUPT_HOME_JSON)
def test_corrupt_home_json_is_invalid_input(
    soft_home: Home, mutate: Callable[[bytes], bytes], message: str
) -> None:
    path = soft_home.path
    soft_home.close()
    (path / "home.json").write_bytes(mutate((path / "home.json").read_bytes()))
    before = snapshot(path)
    with pytest.raises(InvalidInput, match=message):
        Home.open(path, passphrase=never("passphrase"), pin=never("PIN"))
    assert snapshot(path) == before


def test_database_from_a_newer_schema_is_refused_and_left_alone(soft_home: Home) -> None:
    path = soft_home.path
    soft_home.close()
    with sqlite3.connect(path / "fabtrust.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    db.close()
    before = (path / "fabtrust.db").read_bytes()
    with pytest.raises(Unavailable, match="schema '9999' is newer"):
        Home.open(path, passphrase=never("passphrase"), pin=never("PIN"))
    assert (path / "fabtrust.db").read_bytes() == before
    with sqlite3.connect(path / "fabtrust.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999",)]
    db.close()


def test_wrong_passphrase_is_not_authorised_and_logs_nothing(soft_home: Home) -> None:
    path = soft_home.path
    soft_home.close()
    with Home.open(path, passphrase=lambda: "wrong passphrase", pin=never("PIN")) as home:
        size = home.log.size()
        with pytest.raises(NotAuthorised, match="passphrase"):
            home.keys.generate("k", KeyType.P256, KeyUsage.SIGN, purpose="test")
        assert home.log.size() == size
    assert not (path / "keystore" / "keys" / "k.json").exists()


def test_read_only_use_never_asks_for_a_secret(soft_home: Home) -> None:
    path = soft_home.path
    soft_home.keys.generate("k", KeyType.ED25519, KeyUsage.SIGN, purpose="grow the log")
    soft_home.close()
    with Home.open(path, passphrase=never("passphrase"), pin=never("PIN")) as home:
        cp = home.log.latest_checkpoint()
        assert cp.size == 3
        verifier = home.log_verifier()
        note = home.log.checkpoint_at(2).note
        inclusion = home.log.inclusion_proof(1, cp.size)
        doc = json.dumps(proofs.inclusion_doc(home.config.origin, inclusion)).encode()
        origin, parsed = proofs.parse_doc(doc)
        proofs.verify_with_checkpoint(origin, parsed, cp.note, verifier, entry=home.log.entries(1, 2)[0])
        consistency = home.log.consistency_proof(2, cp.size)
        doc = json.dumps(proofs.consistency_doc(home.config.origin, consistency)).encode()
        origin, parsed = proofs.parse_doc(doc)
        proofs.verify_with_checkpoint(origin, parsed, cp.note, verifier, old_checkpoint_note=note)
        assert home.log_vkey() == verifier.vkey()


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        pytest.param("hsm", InvalidInput, "unknown key store", id="unknown-keystore"),
        pytest.param("pkcs11:object=x", InvalidInput, "must name a token", id="pkcs11-without-token"),
    ],
)
def test_init_with_a_bad_keystore_writes_nothing(
    home_path: Path, spec: str, error: type[FabtrustError], message: str
) -> None:
    with pytest.raises(error, match=message):
        Home.init(home_path, keystore=spec, passphrase=passphrase, pin=lambda: "1234")
    assert not home_path.exists()


def test_init_without_a_passphrase_writes_nothing(home_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fabtrust.home import env_secret

    monkeypatch.delenv("FABTRUST_TEST_NO_SUCH_SECRET", raising=False)
    monkeypatch.setattr("fabtrust.home.os.isatty", lambda fd: False)
    source = env_secret("FABTRUST_TEST_NO_SUCH_SECRET", "passphrase: ")
    with pytest.raises(NotAuthorised, match="FABTRUST_TEST_NO_SUCH_SECRET"):
        Home.init(home_path, passphrase=source, pin=never("PIN"))
    assert not home_path.exists()


def test_init_with_an_unreachable_database_leaves_no_partial_home(home_path: Path) -> None:
    home_path.mkdir()
    (home_path / "notes.txt").write_text("kept")
    with pytest.raises(Unavailable, match="cannot use the database"):
        Home.init(
            home_path,
            database="postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2",
            passphrase=passphrase,
            pin=never("PIN"),
        )
    # A retry must not meet "an incomplete data home": the key store made on the way was removed.
    assert snapshot(home_path) == {"notes.txt": b"kept"}


# -- every key operation is audited ----------------------------------------------------------------


def _peer_der() -> bytes:
    return spki_der(ec.generate_private_key(ec.SECP256R1()).public_key())


KeyOp = Callable[[Home], object]

AUDITED_OPS: list[Any] = [
    pytest.param(
        lambda h: h.keys.generate("new", KeyType.P384, KeyUsage.SIGN, purpose="p"),
        "key.generate",
        "soft:new",
        "ok",
        None,
        id="ok/generate",
    ),
    pytest.param(
        lambda h: h.keys.sign("soft:signer", b"msg", purpose="p"),
        "key.sign",
        "soft:signer",
        "ok",
        None,
        id="ok/sign",
    ),
    pytest.param(
        lambda h: h.keys.exchange("soft:agreer", _peer_der(), purpose="p"),
        "key.exchange",
        "soft:agreer",
        "ok",
        None,
        id="ok/exchange",
    ),
    pytest.param(
        lambda h: h.keys.hpke_open(
            "soft:agreer",
            hpke.seal(h.keys.get("soft:agreer").public_key_der, b"secret", b"i"),
            b"i",
            purpose="p",
        ),
        "key.hpke-open",
        "soft:agreer",
        "ok",
        None,
        id="ok/hpke-open",
    ),
    pytest.param(
        lambda h: h.keys.destroy("soft:signer", purpose="p"),
        "key.destroy",
        "soft:signer",
        "ok",
        None,
        id="ok/destroy",
    ),
    pytest.param(
        lambda h: h.keys.generate("signer", KeyType.P256, KeyUsage.SIGN, purpose="p"),
        "key.generate",
        "signer",
        "refused",
        Conflict,
        id="refused/generate-duplicate-label",
    ),
    pytest.param(
        lambda h: h.keys.sign("soft:missing", b"msg", purpose="p"),
        "key.sign",
        "soft:missing",
        "refused",
        NotFound,
        id="refused/sign-missing-key",
    ),
    pytest.param(
        lambda h: h.keys.sign("soft:agreer", b"msg", purpose="p"),
        "key.sign",
        "soft:agreer",
        "refused",
        InvalidInput,
        id="refused/sign-with-agreement-key",
    ),
    pytest.param(
        lambda h: h.keys.exchange("soft:signer", _peer_der(), purpose="p"),
        "key.exchange",
        "soft:signer",
        "refused",
        InvalidInput,
        id="refused/exchange-with-signing-key",
    ),
    pytest.param(
        lambda h: h.keys.destroy("soft:missing", purpose="p"),
        "key.destroy",
        "soft:missing",
        "refused",
        NotFound,
        id="refused/destroy-missing-key",
    ),
]


@pytest.mark.parametrize(("op", "action", "subject", "outcome", "error"), AUDITED_OPS)
def test_every_key_operation_is_audited(
    soft_home: Home,
    op: KeyOp,
    action: str,
    subject: str,
    outcome: str,
    error: type[FabtrustError] | None,
) -> None:
    signer = soft_home.keys.generate("signer", KeyType.P256, KeyUsage.SIGN, purpose="setup")
    agreer = soft_home.keys.generate("agreer", KeyType.P256, KeyUsage.AGREE, purpose="setup")
    key_ids = {"soft:signer": signer.key_id, "soft:agreer": agreer.key_id}
    size = soft_home.log.size()
    if error is None:
        result = op(soft_home)
    else:
        with pytest.raises(error):
            op(soft_home)
        result = None
    assert soft_home.log.size() == size + 1
    entry = last_entry(soft_home)
    assert entry.type == AUDIT_KEY
    assert entry.actor == "tester"
    assert (entry.action, entry.subject, entry.outcome.value) == (action, subject, outcome)
    assert entry.details["purpose"] == "p"
    if outcome == "ok":
        expected_id = getattr(result, "key_id", None) or key_ids[subject]
        assert entry.details["key_id"] == expected_id
        assert "reason" not in entry.details
    else:
        assert error is not None
        assert entry.details["reason"] == error.code
        if subject in key_ids:
            assert entry.details["key_id"] == key_ids[subject]
    # the logged entry is covered by a checkpoint the log key signed
    proof = soft_home.log.inclusion_proof(size, size + 1)
    doc = json.dumps(proofs.inclusion_doc(soft_home.config.origin, proof)).encode()
    origin, parsed = proofs.parse_doc(doc)
    proofs.verify_with_checkpoint(
        origin,
        parsed,
        soft_home.log.latest_checkpoint().note,
        soft_home.log_verifier(),
        entry=entry.to_json(),
    )


def test_signatures_from_home_keys_verify(soft_home: Home) -> None:
    for label, key_type in [("p256", KeyType.P256), ("ed", KeyType.ED25519), ("mldsa", KeyType.MLDSA65)]:
        info = soft_home.keys.generate(label, key_type, KeyUsage.SIGN, purpose="test")
        signature = soft_home.keys.sign(info.uri, b"message", purpose="test")
        verify_signature(info.public_key_der, b"message", signature)


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_home_on_postgresql_round_trips(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "pg-home"
    with Home.init(path, database=pg_url, passphrase=passphrase, pin=never("PIN")) as home:
        assert home.store.dialect == "postgresql"
        home.keys.generate("k", KeyType.P256, KeyUsage.SIGN, purpose="test")
        cp = home.log.latest_checkpoint()
    assert not (path / "fabtrust.db").exists()
    assert json.loads((path / "home.json").read_text())["database"] == pg_url
    with Home.open(path, passphrase=never("passphrase"), pin=never("PIN")) as home:
        assert home.log.latest_checkpoint() == cp
        assert cp.size == 3
        open_checkpoint(cp.note, home.log_verifier(), home.config.origin)


@pytest.mark.postgres
def test_two_homes_share_one_postgresql_database(tmp_path: Path, pg_url: str) -> None:
    a = Home.init(tmp_path / "a", database=pg_url, passphrase=passphrase, pin=never("PIN"))
    b = Home.init(tmp_path / "b", database=pg_url, passphrase=lambda: "other", pin=never("PIN"))
    with a, b:
        assert a.config.origin != b.config.origin
        before_b = b.log.latest_checkpoint()
        a.keys.generate("only-in-a", KeyType.ED25519, KeyUsage.SIGN, purpose="test")
        assert a.log.size() == 3
        assert b.log.latest_checkpoint() == before_b
        b.keys.generate("only-in-b", KeyType.ED25519, KeyUsage.SIGN, purpose="test")
        for home in (a, b):
            cp = home.log.latest_checkpoint()
            assert open_checkpoint(cp.note, home.log_verifier(), home.config.origin).size == 3
        # each log's checkpoints verify only under its own key
        with pytest.raises(FabtrustError, match="no signature from a trusted key"):
            open_checkpoint(a.log.latest_checkpoint().note, b.log_verifier())
        assert [AuditEntry.parse(x).subject for x in a.log.entries(2, 3)] == ["soft:only-in-a"]
        assert [AuditEntry.parse(x).subject for x in b.log.entries(2, 3)] == ["soft:only-in-b"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "with_password",
    [
        pytest.param(lambda u: u.replace("postgres@", "postgres:s3cret-pw@"), id="userinfo"),
        pytest.param(lambda u: u + "?password=s3cret-pw", id="query"),
    ],
)
def test_home_json_never_holds_the_database_password(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, with_password: Callable[[str], str]
) -> None:
    # The test server trusts every local connection, so the password is accepted whatever it is;
    # spy on the URLs the store is opened with to see which password is actually sent.
    url = with_password(pg_url)
    opened: list[str] = []
    real_open = Store.open.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Store], u: str, /, **kw: Any) -> Store:
        opened.append(u)
        return real_open(cls, u, **kw)  # type: ignore[no-any-return]

    monkeypatch.setattr(Store, "open", classmethod(spy))
    path = tmp_path / "pw-home"
    Home.init(path, database=url, passphrase=passphrase, pin=never("PIN")).close()
    assert opened == [url]  # init connects with the password given, not a masked one
    text = (path / "home.json").read_text()
    assert "s3cret-pw" not in text
    assert "***" not in text
    assert json.loads(text)["database"] == pg_url
    opened.clear()
    Home.open(path, passphrase=never("passphrase"), pin=never("PIN")).close()
    assert opened == [pg_url]  # no made-up password: libpq may use PGPASSWORD or .pgpass
    opened.clear()
    Home.open(path, database=url, passphrase=never("passphrase"), pin=never("PIN")).close()
    assert opened == [url]


# -- PKCS#11 (SoftHSM) -----------------------------------------------------------------------------


@pytest.mark.softhsm
def test_home_with_a_pkcs11_key_store(home_path: Path, softhsm: SoftHsm, hsm_token: HsmToken) -> None:
    label, pin = hsm_token
    spec = f"pkcs11:token={label}"
    with Home.init(home_path, keystore=spec, passphrase=never("passphrase"), pin=lambda: pin) as home:
        config = home.config
        info = home.keys.generate("device-ca", KeyType.P256, KeyUsage.SIGN, purpose="test")
        signature = home.keys.sign(info.uri, b"message", purpose="test")
        verify_signature(info.public_key_der, b"message", signature)
        assert last_entry(home).action == "key.sign"
        assert last_entry(home).details == {"key_id": info.key_id, "purpose": "test"}
    assert config.keystore == spec
    assert config.log_key.startswith(f"pkcs11:token={label};")
    assert not (home_path / "keystore").exists()
    assert pin not in (home_path / "home.json").read_text()

    # the log key lives in the token
    with Pkcs11KeyStore(softhsm.module_path, label, pin) as token:
        log_key = token.get(config.log_key)
        assert log_key.key_type is KeyType.ED25519
        assert {k.uri for k in token.list()} == {config.log_key, info.uri}

    with Home.open(home_path, passphrase=never("passphrase"), pin=lambda: pin) as home:
        # a new checkpoint is signed in the token and verifies under the home's log key
        home.keys.generate("second", KeyType.ED25519, KeyUsage.SIGN, purpose="test")
        cp = home.log.latest_checkpoint()
        assert open_checkpoint(cp.note, home.log_verifier(), config.origin).size == 5


@pytest.mark.softhsm
def test_pkcs11_home_with_a_wrong_pin_is_not_authorised(home_path: Path, hsm_token: HsmToken) -> None:
    label, pin = hsm_token
    Home.init(
        home_path, keystore=f"pkcs11:token={label}", passphrase=never("passphrase"), pin=lambda: pin
    ).close()
    with Home.open(home_path, passphrase=never("passphrase"), pin=lambda: "0000-wrong") as home:
        cp = home.log.latest_checkpoint()  # read-only work needs no PIN
        with pytest.raises(NotAuthorised, match="wrong PIN"):
            home.keys.generate("k", KeyType.P256, KeyUsage.SIGN, purpose="test")
        assert home.log.latest_checkpoint() == cp
    # the right PIN still works afterwards
    with Home.open(home_path, passphrase=never("passphrase"), pin=lambda: pin) as home:
        assert [k.uri for k in home.keys.list()] == [home.config.log_key]


@pytest.mark.softhsm
def test_pkcs11_init_with_a_wrong_pin_writes_nothing(home_path: Path, hsm_token: HsmToken) -> None:
    label, _pin = hsm_token
    with pytest.raises(NotAuthorised, match="wrong PIN"):
        Home.init(
            home_path, keystore=f"pkcs11:token={label}", passphrase=never("passphrase"), pin=lambda: "0000"
        )
    assert not home_path.exists()


@pytest.mark.softhsm
def test_pkcs11_init_with_a_missing_token_is_unavailable(home_path: Path, softhsm: SoftHsm) -> None:
    with pytest.raises(Unavailable, match="no PKCS#11 token labelled"):
        Home.init(
            home_path,
            keystore="pkcs11:token=no-such-token",
            passphrase=never("passphrase"),
            pin=lambda: "1234",
        )
    assert not home_path.exists()
