"""The ``fabtrust`` command line, driven for real: in-process through ``main()`` for speed, and as a
subprocess (``.venv/bin/fabtrust``) for the end-to-end flow an operator and an auditor run.

Every refusal must be exit 2 and one line ``error: ...`` on stderr, with no traceback, and must leave
the data home (and any file it was given) byte for byte as it was.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fabtrust.access import Role
from fabtrust.cli.main import main
from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.home import Home
from fabtrust.tlog.audit import AuditEntry
from fabtrust.tlog.checkpoint import Ed25519NoteSigner, NoteVerifier, open_checkpoint, parse_checkpoint_body
from tests.cli.result import Result
from tests.team import token_secret

PASSPHRASE = "tr0ub4dor-and-3-more-words"
WRONG = "hunter2-not-the-passphrase"
SECRETS = (PASSPHRASE, WRONG)
FABTRUST = Path(sys.executable).with_name("fabtrust")
SECRET_ENV = ("FABTRUST_HOME", "FABTRUST_DB", "FABTRUST_KEYSTORE_PASSPHRASE", "FABTRUST_PKCS11_PIN")


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run ``fabtrust ARGS`` in this process (passphrase in the environment, like an operator)."""
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FABTRUST_KEYSTORE_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: object) -> Result:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        code = exit_info.value.code
        return Result(
            code if isinstance(code, int) else (0 if code is None else 1),
            out,
            err,
            secrets=SECRETS,
        )

    return run


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def never() -> str:
    raise AssertionError("a secret was asked for")


def read_only(path: Path) -> Home:
    return Home.open(path, passphrase=never, pin=never)


# -- a prepared data home, copied for each test -----------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    root: Path  # the template; copy it, never change it
    origin: str
    vkey: str
    size: int


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    root = tmp_path_factory.mktemp("template") / "home"
    with Home.init(root, passphrase=lambda: PASSPHRASE, pin=never, actor="tester") as home:
        home.keys.generate("signer", KeyType.P256, KeyUsage.SIGN, purpose="test")
        home.keys.generate("agreer", KeyType.X25519, KeyUsage.AGREE, purpose="test")
        home.keys.generate("edsigner", KeyType.ED25519, KeyUsage.SIGN, purpose="test")
        return Prepared(root, home.config.origin, home.log_vkey(), home.log.size())


@pytest.fixture
def home(prepared: Prepared, tmp_path: Path) -> Path:
    path = tmp_path / "home"
    shutil.copytree(prepared.root, path)
    return path


@dataclass(frozen=True)
class AuditFiles:
    """What an auditor holds: an export, the checkpoint it ends at, an older checkpoint, the vkey."""

    dir: Path
    export: Path
    checkpoint: Path
    old_checkpoint: Path
    vkey: Path
    inclusion: Path
    consistency: Path
    entry: bytes  # the exact bytes of the entry the inclusion proof is about


@pytest.fixture(scope="module")
def audit_files(prepared: Prepared, tmp_path_factory: pytest.TempPathFactory) -> AuditFiles:
    d = tmp_path_factory.mktemp("audit")
    home = d / "home"
    shutil.copytree(prepared.root, home)
    env = {"FABTRUST_KEYSTORE_PASSPHRASE": PASSPHRASE}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for args in (
            ["log", "export", d / "export.jsonl", "--checkpoint-out", d / "checkpoint.txt"],
            ["log", "prove", "--index", "3", "--out", d / "inclusion.json"],
            ["log", "consistency", "--old", "2", "--out", d / "consistency.json"],
        ):
            with pytest.raises(SystemExit) as exit_info:
                main(["--home", str(home), *map(str, args)])
            assert exit_info.value.code == 0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    with read_only(home) as h:
        (d / "old-checkpoint.txt").write_bytes(h.log.checkpoint_at(2).note)
        entry = h.log.entries(3, 4)[0]
    (d / "log.vkey").write_text(prepared.vkey + "\n")
    return AuditFiles(
        d,
        d / "export.jsonl",
        d / "checkpoint.txt",
        d / "old-checkpoint.txt",
        d / "log.vkey",
        d / "inclusion.json",
        d / "consistency.json",
        entry,
    )


# -- init ------------------------------------------------------------------------------------------


def test_init_prints_a_usable_verifier_key_even_on_a_narrow_terminal(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    run = cli("--home", tmp_path / "h", "init", "--origin", "example.com/fab/line-1").ok()
    assert "initialised data home" in run.out
    lines = {line.split()[0]: line for line in run.out.splitlines()[1:]}
    vkey = lines["log"].split()[-1]  # "  log key    <vkey>" on one line
    with read_only(tmp_path / "h") as home:
        assert NoteVerifier.parse(vkey) == home.log_verifier()
        assert home.config.origin == "example.com/fab/line-1"


def test_init_creates_the_first_two_people_and_shows_their_tokens_once(cli: Cli, tmp_path: Path) -> None:
    run = cli("--home", tmp_path / "h", "init", "--admin", "ada", "--security-officer", "oscar").ok()
    tokens = [line.strip() for line in run.out.splitlines() if line.strip().startswith("ftk_")]
    assert len(tokens) == 2
    with read_only(tmp_path / "h") as home:
        callers = [home.access.authenticate(t) for t in tokens]
        assert [(c.principal_id, sorted(c.roles)) for c in callers] == [
            ("ada", [Role.ADMINISTRATOR]),
            ("oscar", [Role.SECURITY_OFFICER]),
        ]
        stored = {t.token_id for t in home.access.tokens()}
        assert stored == {c.token_id for c in callers}
        entries = [AuditEntry.parse(e) for e in home.log.entries(0, home.log.size())]
    # shown once: neither the database nor the audit log holds a token
    stored_bytes = b"".join(f.read_bytes() for f in (tmp_path / "h").rglob("*") if f.is_file())
    assert not [t for t in tokens if token_secret(t).encode() in stored_bytes]
    assert not [t for t in tokens for e in entries if token_secret(t) in e.to_json().decode()]


def test_second_init_says_it_exists_and_changes_nothing(cli: Cli, home: Path) -> None:
    before = snapshot(home)
    cli("--home", home, "init").refused("already exists")
    assert snapshot(home) == before


def test_init_against_an_unreachable_database_leaves_nothing_behind(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "h"
    cli("--home", path, "--db", "postgresql+psycopg://u:pw@127.0.0.1:9/x?connect_timeout=2", "init").refused(
        "cannot use the database"
    )
    assert not path.exists()
    cli("--home", path, "init").ok()  # no "incomplete data home" left in the way


def test_init_with_an_unsupported_database_url_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    cli("--home", tmp_path / "h", "--db", "mysql://u@h/db", "init").refused("unsupported database")
    assert not (tmp_path / "h").exists()


# -- secrets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["keys", "list"], id="keys-list"),
        pytest.param(["keys", "create", "new-key"], id="keys-create"),
    ],
)
def test_wrong_passphrase_is_refused_without_echoing_it(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("FABTRUST_KEYSTORE_PASSPHRASE", WRONG)
    before = snapshot(home)
    cli("--home", home, *args).refused("passphrase")
    assert snapshot(home) == before


def test_missing_passphrase_without_a_terminal_is_refused(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    before = snapshot(home)
    proc = subprocess.run(
        [str(FABTRUST), "--home", str(home), "keys", "list"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    Result(proc.returncode, proc.stdout, proc.stderr, secrets=SECRETS).refused("FABTRUST_KEYSTORE_PASSPHRASE")
    assert snapshot(home) == before


def test_read_only_commands_need_no_passphrase(cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FABTRUST_KEYSTORE_PASSPHRASE")
    monkeypatch.setattr("fabtrust.home.os.isatty", lambda fd: False)
    cp = cli("--home", home, "log", "checkpoint").ok().out
    assert cp.splitlines()[1] == "5"
    vkey = cli("--home", home, "log", "key").ok().out.strip()
    open_checkpoint(cp.encode(), NoteVerifier.parse(vkey))
    cli("--home", home, "log", "prove", "--index", "0").ok()
    cli("--home", home, "log", "entries").ok()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(
            lambda p: p.write_bytes(p.read_bytes()[:40]), "corrupt or truncated", id="header-truncated"
        ),
        pytest.param(lambda p: p.write_bytes(b""), "corrupt or truncated", id="header-empty"),
        pytest.param(lambda p: p.write_text("[1, 2]"), "not a JSON object", id="header-not-an-object"),
        pytest.param(
            lambda p: p.write_text(
                p.read_text().replace("fabtrust.soft-keystore/v1", "fabtrust.soft-keystore/v2")
            ),
            "unknown format",
            id="header-newer-format",
        ),
        pytest.param(lambda p: p.unlink(), "not found", id="header-missing"),
    ],
)
def test_damaged_key_store_header_is_refused(
    cli: Cli, home: Path, damage: Callable[[Path], object], message: str
) -> None:
    damage(home / "keystore" / "keystore.json")
    before = snapshot(home)
    cli("--home", home, "keys", "list").refused(message)
    assert snapshot(home) == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-30]), "corrupt or truncated", id="truncated"),
        pytest.param(
            lambda p: p.write_text(
                json.dumps({**json.loads(p.read_text()), "ciphertext": base64.b64encode(b"x" * 80).decode()})
            ),
            "tampered",
            id="ciphertext-replaced",
        ),
        pytest.param(
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "usage": "agree"})),
            "tampered",
            id="usage-swapped",
        ),
    ],
)
def test_damaged_key_file_is_refused(
    cli: Cli, home: Path, damage: Callable[[Path], object], message: str
) -> None:
    damage(home / "keystore" / "keys" / "signer.json")
    before = snapshot(home)
    cli("--home", home, "keys", "list").refused(message)
    assert snapshot(home) == before


# -- keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--type", "rsa-2048"], "unknown key type 'rsa-2048'", id="unknown-type"),
        pytest.param(["--usage", "encrypt"], "unknown usage 'encrypt'", id="unknown-usage"),
        pytest.param(["--type", "ed25519", "--usage", "agree"], "", id="type-cannot-agree"),
    ],
)
def test_keys_create_refuses_bad_options_before_touching_the_home(
    cli: Cli, home: Path, args: list[str], message: str
) -> None:
    with read_only(home) as h:
        size = h.log.size()
    keys_before = snapshot(home / "keystore")
    cli("--home", home, "keys", "create", "new-key", *args).refused(message)
    assert snapshot(home / "keystore") == keys_before
    with read_only(home) as h:
        assert h.log.size() in (size, size + 1)  # at most the refusal itself is logged
        if h.log.size() == size + 1:
            assert AuditEntry.parse(h.log.entries(size, size + 1)[0]).outcome == "refused"


@pytest.mark.parametrize(
    ("label", "message"),
    [
        pytest.param("signer", "already exists", id="duplicate-label"),
        pytest.param("-bad", "key label", id="bad-label"),
        pytest.param("x" * 65, "key label", id="label-too-long"),
    ],
)
def test_keys_create_refusals_are_logged_and_create_nothing(
    cli: Cli, home: Path, label: str, message: str
) -> None:
    with read_only(home) as h:
        size = h.log.size()
    keys_before = snapshot(home / "keystore")
    cli("--home", home, "keys", "create", "--", label).refused(message)
    assert snapshot(home / "keystore") == keys_before
    with read_only(home) as h:
        assert h.log.size() == size + 1
        entry = AuditEntry.parse(h.log.entries(size, size + 1)[0])
    assert (entry.action, entry.outcome.value) == ("key.generate", "refused")


# -- out-of-range requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["log", "prove", "--index", "5"], "outside a tree of size 5", id="prove/index-past-end"),
        pytest.param(["log", "prove", "--index", "-1"], "outside", id="prove/negative-index"),
        pytest.param(
            ["log", "prove", "--index", "0", "--size", "6"], "outside the log", id="prove/size-past-end"
        ),
        pytest.param(
            ["log", "prove", "--index", "2", "--size", "2"],
            "outside a tree of size 2",
            id="prove/index-ge-size",
        ),
        pytest.param(
            ["log", "prove", "--index", "0", "--size", "-3"], "outside the log", id="prove/negative-size"
        ),
        pytest.param(
            ["log", "consistency", "--old", "6"],
            "between 0 and the new size 5",
            id="consistency/old-past-end",
        ),
        pytest.param(
            ["log", "consistency", "--old", "3", "--new", "2"], "between 0", id="consistency/old-gt-new"
        ),
        pytest.param(["log", "consistency", "--old", "-1"], "between 0", id="consistency/negative-old"),
        pytest.param(
            ["log", "consistency", "--old", "1", "--new", "9"],
            "outside the log",
            id="consistency/new-past-end",
        ),
        pytest.param(
            ["log", "checkpoint", "--size", "1"],
            "no checkpoint was signed at size 1",
            id="checkpoint/unsigned",
        ),
        pytest.param(["log", "entries", "--start", "5"], "outside the log", id="entries/start-past-end"),
        pytest.param(
            ["log", "entries", "--start", "0", "--end", "2000"], "outside the log", id="entries/too-many"
        ),
        pytest.param(["log", "prove", "--index", "abc"], "--index", id="usage/not-an-integer"),
        pytest.param(["log", "prove"], "--index", id="usage/missing-option"),
        pytest.param(["log", "nosuch"], "no such command", id="usage/unknown-command"),
        pytest.param(["serve", "--tls-cert", "cert.pem"], "--tls-key", id="serve/cert-without-key"),
    ],
)
def test_bad_requests_are_one_line_errors_and_change_nothing(
    cli: Cli, home: Path, args: list[str], message: str
) -> None:
    before = snapshot(home)
    cli("--home", home, *args).refused(message)
    assert snapshot(home) == before


def test_database_from_a_newer_schema_is_refused(cli: Cli, home: Path) -> None:
    with sqlite3.connect(home / "fabtrust.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    db.close()
    before = snapshot(home)
    cli("--home", home, "log", "checkpoint").refused("schema", "newer")
    cli("--home", home, "keys", "create", "k").refused("schema")
    assert snapshot(home) == before


def test_missing_home_is_a_one_line_error(cli: Cli, tmp_path: Path) -> None:
    cli("--home", tmp_path / "none", "log", "checkpoint").refused("no data home", "fabtrust init")
    assert not (tmp_path / "none").exists()


# -- offline verification: tampered exports --------------------------------------------------------


def _lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _flip(raw: bytes, at: int) -> bytes:
    b = bytearray(raw)
    b[at] ^= 0x01
    return bytes(b)


def _flip_in_entry(raw: bytes) -> bytes:
    lines = _lines(raw)
    i = lines[2].index(b'"action":"') + len(b'"action":"')
    lines[2] = _flip(lines[2], i)  # still valid JSON, a different action
    return _join(lines)


def _swap(raw: bytes) -> bytes:
    lines = _lines(raw)
    lines[2], lines[3] = lines[3], lines[2]
    return _join(lines)


def _drop(raw: bytes) -> bytes:
    lines = _lines(raw)
    del lines[3]
    return _join(lines)


def _append(raw: bytes) -> bytes:
    return raw + _lines(raw)[-1] + b"\n"


def _header_size(raw: bytes) -> bytes:
    lines = _lines(raw)
    header = json.loads(lines[0])
    header["size"] += 1
    lines[0] = json.dumps(header).encode()
    return _join(lines)


def _reencode(raw: bytes) -> bytes:
    lines = _lines(raw)
    lines[1] = json.dumps(json.loads(lines[1]), indent=None).encode()  # same JSON, not canonical bytes
    return _join(lines)


TAMPERED_EXPORTS = [
    pytest.param(_flip_in_entry, "do not hash to the checkpoint", id="flip-a-byte-in-an-entry"),
    pytest.param(
        lambda raw: _flip(raw, len(_lines(raw)[0]) + 3), "malformed", id="flip-a-byte-breaking-json"
    ),
    pytest.param(_drop, "truncated", id="drop-a-line"),
    pytest.param(_swap, "do not hash to the checkpoint", id="swap-two-lines"),
    pytest.param(_append, "more entry lines", id="append-a-line"),
    pytest.param(lambda raw: raw[: len(raw) - 25], "truncated", id="truncate-mid-line"),
    pytest.param(lambda raw: _join(_lines(raw)[:-1]), "truncated", id="truncate-a-whole-line"),
    pytest.param(lambda raw: b"", "empty", id="empty-file"),
    pytest.param(_header_size, "truncated", id="header-claims-more"),
    pytest.param(lambda raw: b"not json\n" + raw.split(b"\n", 1)[1], "header", id="header-not-json"),
    pytest.param(_reencode, "malformed", id="entry-not-canonical"),
]


@pytest.mark.parametrize(("tamper", "message"), TAMPERED_EXPORTS)
def test_tampered_export_is_refused(
    cli: Cli, audit_files: AuditFiles, tmp_path: Path, tamper: Callable[[bytes], bytes], message: str
) -> None:
    original = audit_files.export.read_bytes()
    bad = tmp_path / "export.jsonl"
    bad.write_bytes(tamper(original))
    assert bad.read_bytes() != original
    before = snapshot(tmp_path)
    cli("log", "verify", bad, "--checkpoint", audit_files.checkpoint, "--key", audit_files.vkey).refused(
        message
    )
    assert snapshot(tmp_path) == before


def _resigned_by_another_key(note: bytes) -> bytes:
    body = note[: note.index(b"\n\n") + 1]
    cp = parse_checkpoint_body(body)
    from fabtrust.tlog.checkpoint import sign_checkpoint

    return sign_checkpoint(cp, Ed25519NoteSigner(cp.origin, Ed25519PrivateKey.generate()))


def _with_other_size(note: bytes) -> bytes:
    lines = note.split(b"\n")
    lines[1] = b"4"
    return b"\n".join(lines)


BAD_CHECKPOINTS = [
    pytest.param(_resigned_by_another_key, "no signature from a trusted key", id="signed-by-another-key"),
    pytest.param(_with_other_size, "does not verify", id="size-edited"),
    pytest.param(lambda n: n.split(b"\n\n")[0] + b"\n", "no blank line", id="signature-stripped"),
    pytest.param(lambda n: n[:-10], "", id="truncated"),
    pytest.param(lambda n: b"", "", id="empty"),
]


@pytest.mark.parametrize(("damage", "message"), BAD_CHECKPOINTS)
def test_export_against_a_bad_checkpoint_is_refused(
    cli: Cli, audit_files: AuditFiles, tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    cp = tmp_path / "cp.txt"
    cp.write_bytes(damage(audit_files.checkpoint.read_bytes()))
    cli("log", "verify", audit_files.export, "--checkpoint", cp, "--key", audit_files.vkey).refused(message)


@pytest.mark.parametrize(("damage", "message"), BAD_CHECKPOINTS)
def test_proof_against_a_bad_checkpoint_is_refused(
    cli: Cli, audit_files: AuditFiles, tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    cp = tmp_path / "cp.txt"
    cp.write_bytes(damage(audit_files.checkpoint.read_bytes()))
    cli("log", "verify-proof", audit_files.inclusion, "--checkpoint", cp, "--key", audit_files.vkey).refused(
        message
    )


def test_checkpoint_under_another_logs_key_is_refused(
    cli: Cli, audit_files: AuditFiles, tmp_path: Path
) -> None:
    other = Ed25519NoteSigner("someone.else/log", Ed25519PrivateKey.generate()).verifier().vkey()
    cli("log", "verify", audit_files.export, "--checkpoint", audit_files.checkpoint, "--key", other).refused(
        "no signature from a trusted key"
    )


# -- offline verification: tampered proof documents -----------------------------------------------


def _edit(field: str, value: object) -> Callable[[bytes], bytes]:
    def apply(raw: bytes) -> bytes:
        doc = json.loads(raw)
        doc[field] = value
        return json.dumps(doc).encode()

    return apply


def _flip_hash(field: str, index: int | None = None) -> Callable[[bytes], bytes]:
    def apply(raw: bytes) -> bytes:
        doc = json.loads(raw)
        value = doc[field] if index is None else doc[field][index]
        digest = bytearray(base64.b64decode(value))
        digest[0] ^= 0x80
        flipped = base64.b64encode(bytes(digest)).decode()
        if index is None:
            doc[field] = flipped
        else:
            doc[field][index] = flipped
        return json.dumps(doc).encode()

    return apply


BAD_INCLUSION_DOCS = [
    pytest.param(lambda raw: raw[:-20], "not valid JSON", id="truncated-json"),
    pytest.param(lambda raw: b"\x00\xff", "not valid JSON", id="binary"),
    pytest.param(lambda raw: b"[]", "JSON object", id="not-an-object"),
    pytest.param(_edit("format", "fabtrust.inclusion-proof/v2"), "unknown proof format", id="unknown-format"),
    pytest.param(_edit("extra", 1), "missing or unknown fields", id="unknown-field"),
    pytest.param(_flip_hash("hashes", 0), "", id="flipped-path-hash"),
    pytest.param(_flip_hash("leaf_hash"), "", id="flipped-leaf-hash"),
    pytest.param(_flip_hash("root"), "", id="flipped-root"),
    pytest.param(_edit("size", 6), "", id="wrong-size"),
    pytest.param(_edit("index", 4), "", id="wrong-index"),
    pytest.param(_edit("index", -1), "non-negative integer", id="negative-index"),
    pytest.param(_edit("size", "5"), "non-negative integer", id="size-as-string"),
    pytest.param(_edit("hashes", ["AAAA"]), "32 bytes", id="short-hash"),
    pytest.param(_edit("hashes", ["not base64!"]), "base64", id="hash-not-base64"),
    pytest.param(_edit("origin", "other.example/log"), "origin", id="other-origin"),
]


@pytest.mark.parametrize(("tamper", "message"), BAD_INCLUSION_DOCS)
def test_tampered_inclusion_proof_is_refused(
    cli: Cli, audit_files: AuditFiles, tmp_path: Path, tamper: Callable[[bytes], bytes], message: str
) -> None:
    proof = tmp_path / "proof.json"
    proof.write_bytes(tamper(audit_files.inclusion.read_bytes()))
    entry = tmp_path / "entry.bin"
    entry.write_bytes(audit_files.entry)
    cli(
        "log", "verify-proof", proof, "--checkpoint", audit_files.checkpoint, "--key", audit_files.vkey,
        "--entry", entry,
    ).refused(message)  # fmt: skip


BAD_CONSISTENCY_DOCS = [
    pytest.param(
        _edit("format", "fabtrust.consistency-proof/v0"), "unknown proof format", id="unknown-format"
    ),
    pytest.param(_flip_hash("hashes", 0), "", id="flipped-path-hash"),
    pytest.param(_flip_hash("old_root"), "", id="flipped-old-root"),
    pytest.param(_edit("old_size", 3), "", id="wrong-old-size"),
    pytest.param(_edit("new_size", 6), "", id="wrong-new-size"),
    pytest.param(_edit("hashes", []), "", id="hashes-dropped"),
]


@pytest.mark.parametrize(("tamper", "message"), BAD_CONSISTENCY_DOCS)
def test_tampered_consistency_proof_is_refused(
    cli: Cli, audit_files: AuditFiles, tmp_path: Path, tamper: Callable[[bytes], bytes], message: str
) -> None:
    proof = tmp_path / "proof.json"
    proof.write_bytes(tamper(audit_files.consistency.read_bytes()))
    cli(
        "log", "verify-proof", proof, "--checkpoint", audit_files.checkpoint, "--key", audit_files.vkey,
        "--old-checkpoint", audit_files.old_checkpoint,
    ).refused(message)  # fmt: skip


def test_proof_tied_to_the_wrong_entry_or_old_checkpoint_is_refused(
    cli: Cli, audit_files: AuditFiles, tmp_path: Path
) -> None:
    wrong_entry = tmp_path / "entry.bin"
    wrong_entry.write_bytes(audit_files.entry + b" ")
    common = ["--checkpoint", audit_files.checkpoint, "--key", audit_files.vkey]
    cli("log", "verify-proof", audit_files.inclusion, *common, "--entry", wrong_entry).refused("not the leaf")
    # the newest checkpoint as the "old" one: the proof does not start there
    cli(
        "log", "verify-proof", audit_files.consistency, *common, "--old-checkpoint", audit_files.checkpoint
    ).refused("does not start at the old checkpoint")
    # an inclusion proof checked against an older checkpoint
    cli("log", "verify-proof", audit_files.inclusion, "--checkpoint", audit_files.old_checkpoint,
        "--key", audit_files.vkey).refused("not the checkpoint's")  # fmt: skip


# PROOF, CP, VKEY: the auditor's good files; DIR: a directory; MISSING: a path that does not exist.
UNUSABLE_INPUTS = [
    pytest.param(
        ["PROOF", "--checkpoint", "DIR", "--key", "VKEY"], "is a directory", id="checkpoint-is-a-dir"
    ),
    pytest.param(["DIR", "--checkpoint", "CP", "--key", "VKEY"], "is a directory", id="proof-is-a-dir"),
    pytest.param(["MISSING", "--checkpoint", "CP", "--key", "VKEY"], "not found", id="proof-missing"),
    pytest.param(["PROOF", "--checkpoint", "MISSING", "--key", "VKEY"], "not found", id="checkpoint-missing"),
    pytest.param(["PROOF", "--checkpoint", "CP", "--key", "k" * 300], "verifier key", id="long-inline-key"),
    pytest.param(["PROOF", "--checkpoint", "CP", "--key", "not-a-key"], "verifier key", id="malformed-key"),
    pytest.param(
        ["PROOF", "--checkpoint", "CP", "--key", "VKEY", "--entry", "DIR"], "is a directory", id="entry-dir"
    ),
]


@pytest.mark.parametrize(("args", "message"), UNUSABLE_INPUTS)
def test_unusable_inputs_are_one_line_errors(
    cli: Cli, audit_files: AuditFiles, tmp_path: Path, args: list[str], message: str
) -> None:
    files: dict[str, object] = {
        "PROOF": audit_files.inclusion,
        "CP": audit_files.checkpoint,
        "VKEY": audit_files.vkey,
        "DIR": tmp_path,
        "MISSING": tmp_path / "missing",
    }
    cli("log", "verify-proof", *[files.get(a, a) for a in args]).refused(message)


def test_unwritable_outputs_are_one_line_errors(cli: Cli, home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    cli("--home", home, "log", "prove", "--index", "1", "--out", missing / "p.json").refused("cannot write")
    cli("--home", home, "log", "export", missing / "e.jsonl").refused("cannot write")
    cli("--home", home, "log", "export", tmp_path / "e.jsonl", "--checkpoint-out", missing / "c").refused(
        "cannot write"
    )
    cli("log", "verify", tmp_path, "--checkpoint", tmp_path, "--key", "x+00000000+AA==").refused(
        "verifier key"
    )


def test_a_checkpoint_covering_a_prefix_of_the_export_verifies(cli: Cli, audit_files: AuditFiles) -> None:
    run = cli(
        "log",
        "verify",
        audit_files.export,
        "--checkpoint",
        audit_files.old_checkpoint,
        "--key",
        audit_files.vkey,
    )
    assert "OK: 5 entries" in run.ok().out
    assert "checkpoint size 2" in run.out


# -- end to end, as real processes -----------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update({"FABTRUST_KEYSTORE_PASSPHRASE": PASSPHRASE, "COLUMNS": "200"}, **extra)
    return env


def fabtrust(home: Path | None, *args: object, env: dict[str, str] | None = None) -> Result:
    argv = [str(FABTRUST), *(["--home", str(home)] if home else []), *map(str, args)]
    proc = subprocess.run(argv, env=env or _env(), capture_output=True, text=True, timeout=60, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr, secrets=SECRETS)


@pytest.fixture(scope="module")
def subprocess_ok() -> None:
    if not FABTRUST.is_file():
        pytest.fail(f"{FABTRUST} not found: install the project into the virtualenv (make setup)")


KEY_KINDS = [
    ("p256", "ecdsa-p256", "sign"),
    ("p384", "ecdsa-p384", "sign"),
    ("ed", "ed25519", "sign"),
    ("pq", "ml-dsa-65", "sign"),
    ("x", "x25519", "agree"),
]


def test_end_to_end_operator_and_auditor(tmp_path: Path, subprocess_ok: None) -> None:
    h = tmp_path / "home"
    out = tmp_path / "out"
    out.mkdir()
    init = fabtrust(h, "init").ok()
    assert "initialised data home" in init.out

    for label, key_type, usage in KEY_KINDS:
        created = fabtrust(h, "keys", "create", label, "--type", key_type, "--usage", usage).ok()
        assert created.out.startswith(f"soft:{label}  {key_type}  {usage}  key id ")
    listed = fabtrust(h, "keys", "list").ok().out
    for label, key_type, usage in KEY_KINDS:
        row = next(line for line in listed.splitlines() if f"soft:{label} " in line)
        assert key_type in row
        assert usage in row

    checkpoint = fabtrust(h, "log", "checkpoint").ok().out
    (out / "cp.txt").write_text(checkpoint)
    vkey = fabtrust(h, "log", "key").ok().out.strip()
    assert vkey in init.out  # the key printed at init, whole
    (out / "log.vkey").write_text(vkey + "\n")
    cp = open_checkpoint(checkpoint.encode(), NoteVerifier.parse(vkey))
    assert cp.size == 3 + len(KEY_KINDS)  # init: log key, log created, the first two people; then a key each

    with read_only(h) as home:
        entries = home.log.entries(0, cp.size)
    index = 5  # the third key made, after init's three entries
    (out / "entry.bin").write_bytes(entries[index])
    assert AuditEntry.parse(entries[index]).subject == "soft:ed"

    proof = fabtrust(h, "log", "prove", "--index", index).ok().out
    (out / "inclusion.json").write_text(proof)
    assert json.loads(proof)["index"] == index
    verified = fabtrust(
        None, "log", "verify-proof", out / "inclusion.json", "--checkpoint", out / "cp.txt",
        "--key", out / "log.vkey", "--entry", out / "entry.bin",
    ).ok()  # fmt: skip
    assert verified.out.startswith("OK: InclusionProof verified")

    (out / "old.txt").write_text(fabtrust(h, "log", "checkpoint", "--size", "2").ok().out)
    fabtrust(h, "log", "consistency", "--old", "2", "--out", out / "consistency.json").ok()
    assert json.loads((out / "consistency.json").read_text())["old_size"] == 2
    verified = fabtrust(
        None, "log", "verify-proof", out / "consistency.json", "--checkpoint", out / "cp.txt",
        "--key", vkey, "--old-checkpoint", out / "old.txt",
    ).ok()  # fmt: skip
    assert verified.out.startswith("OK: ConsistencyProof verified")

    exported = fabtrust(h, "log", "export", out / "log.jsonl", "--checkpoint-out", out / "cp2.txt").ok()
    assert f"exported {cp.size} entries" in exported.out
    assert (out / "cp2.txt").read_text() == checkpoint
    assert (out / "log.jsonl").read_bytes() == b"".join(
        [json.dumps({"format": "fabtrust.log-export/v1", "origin": cp.origin, "size": cp.size},
                    sort_keys=True, separators=(",", ":")).encode() + b"\n"]
        + [e + b"\n" for e in entries]
    )  # fmt: skip

    # the auditor has no data home and no secret
    auditor = _env()
    del auditor["FABTRUST_KEYSTORE_PASSPHRASE"]
    for key in (str(out / "log.vkey"), vkey):
        report = fabtrust(
            None,
            "log",
            "verify",
            out / "log.jsonl",
            "--checkpoint",
            out / "cp2.txt",
            "--key",
            key,
            env=auditor,
        ).ok()
        assert f"OK: {cp.size} entries of {cp.origin} verified" in report.out
        assert "fabtrust.audit.key/v1: 6" in report.out
        assert "refused or failed acts: 0" in report.out
    for text in (init.out + init.err, listed, proof, exported.out + exported.err, report.out + report.err):
        assert PASSPHRASE not in text
