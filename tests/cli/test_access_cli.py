"""``fabtrust login``/``logout``/``whoami`` and ``fabtrust access``, driven for real.

Local mode works on a data home as the key-store holder (logged ``via: local``), except approvals,
which need a person's token even there. Remote mode talks to ``fabtrust serve`` running as a process
(TLS with a test CA; plain http on loopback for one test) as the person whose token was given. No
command may print a token, except ``token issue`` printing the one it made; every refusal is exit 2
and one line, and changes nothing in the access tables.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fabtrust.access import AUDIT_ACCESS, Caller, Role
from fabtrust.cli.remote import Credentials, Server
from fabtrust.home import Home, local_actor
from fabtrust.tlog.audit import AuditEntry
from tests.api.test_serve_tls import FABTRUST, free_port, self_signed, serving
from tests.cli.result import Result, run_in_process
from tests.team import MONTH, access_rows, team_tokens, token_secret

PASSPHRASE = "access-cli-passphrase"
CLEARED = (
    "FABTRUST_HOME",
    "FABTRUST_DB",
    "FABTRUST_SERVER",
    "FABTRUST_TOKEN",
    "FABTRUST_CA",
    "FABTRUST_CONFIG",
)


def never() -> str:
    raise AssertionError("a secret was asked for")


def read_only(path: Path) -> Home:
    return Home.open(path, passphrase=never, pin=never)


def tables(path: Path) -> dict[str, list[dict[str, Any]]]:
    with read_only(path) as home:
        return access_rows(home.store)


def access_entries(path: Path, since: int = 0) -> list[AuditEntry]:
    with read_only(path) as home:
        entries = [AuditEntry.parse(e) for e in home.log.entries(since, home.log.size())]
    return [e for e in entries if e.type == AUDIT_ACCESS]


def log_size(path: Path) -> int:
    with read_only(path) as home:
        return home.log.size()


@dataclass(frozen=True)
class Team:
    home: Path
    tokens: dict[Role, str]

    @property
    def ada(self) -> str:  # administrator
        return self.tokens[Role.ADMINISTRATOR]

    @property
    def oscar(self) -> str:  # security officer
        return self.tokens[Role.SECURITY_OFFICER]

    def secrets(self) -> tuple[str, ...]:
        return (PASSPHRASE, *(token_secret(t) for t in self.tokens.values()))


def make_team(path: Path) -> Team:
    with Home.init(path, passphrase=lambda: PASSPHRASE, pin=never, actor="tester") as home:
        return Team(path, team_tokens(home))


Cli = Callable[..., Result]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Where `fabtrust login` keeps credentials in these tests (a directory that does not exist yet)."""
    return tmp_path / "config" / "fabtrust" / "credentials.json"


def make_cli(monkeypatch: pytest.MonkeyPatch, config: Path, secrets: tuple[str, ...]) -> Cli:
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FABTRUST_CONFIG", str(config))
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: object, env: dict[str, str] | None = None, stdin: str = "") -> Result:
        """``fabtrust ARGS`` with ``env`` added; no secret may appear in its output."""
        with monkeypatch.context() as m:
            for k, v in (env or {}).items():
                m.setenv(k, v)
            m.setattr(sys, "stdin", io.StringIO(stdin))
            result = run_in_process(args, secrets)
        leaked = [s for s in secrets if s in result.out + result.err]
        assert not leaked, f"a secret in the output of {args}"
        return result

    return run


def digest_of(result: Result) -> tuple[str, str]:
    doc = json.loads(result.out)
    return doc["request_id"], doc["digest"]


# -- local mode -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_template(tmp_path_factory: pytest.TempPathFactory) -> Team:
    return make_team(tmp_path_factory.mktemp("local") / "home")


@pytest.fixture
def local(local_template: Team, tmp_path: Path) -> Team:
    path = tmp_path / "home"
    shutil.copytree(local_template.home, path)
    return Team(path, local_template.tokens)


@pytest.fixture
def cli(local: Team, config: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    run = make_cli(monkeypatch, config, local.secrets())
    monkeypatch.setenv("FABTRUST_HOME", str(local.home))
    monkeypatch.setenv("FABTRUST_KEYSTORE_PASSPHRASE", PASSPHRASE)
    return run


def test_local_whoami_is_the_keystore_holder(cli: Cli) -> None:
    run = cli("whoami").ok()
    assert run.out == f"{local_actor()} (local, every role)\n"


def test_local_grant_flow_acts_as_the_keystore_holder_and_approves_with_a_token(
    cli: Cli, local: Team
) -> None:
    before = log_size(local.home)
    cli("access", "principal", "create", "kim", "--name", "Kim Lee").ok()
    rid, digest = digest_of(
        cli("access", "grant", "request", "kim", "auditor", "--days", "30", "--json").ok()
    )

    shown = cli("access", "approval", "show", rid).ok()
    assert f"digest        {digest}" in shown.out
    assert "principal_id  kim" in shown.out
    assert f"fabtrust access approve {rid} --digest {digest}" in shown.out

    cli("access", "approve", rid, "--digest", digest, env={"FABTRUST_TOKEN": local.oscar}).ok()
    applied = cli("access", "grant", "apply", rid).ok()
    assert "kim holds auditor" in applied.out

    with read_only(local.home) as home:
        now = home.clock()
        assert home.access.roles_of("kim", now) == {Role.AUDITOR}
        (request,) = [r for r in home.access.requests() if r.request_id == rid]
        assert request.status == "executed"
        assert [a.principal_id for a in request.approvals] == ["oscar"]
    grants = json.loads(cli("access", "grants", "--principal", "kim", "--json").ok().out)
    assert [(g["role"], g["approval_id"]) for g in grants] == [("auditor", rid)]

    acts = {e.action: e for e in access_entries(local.home, before)}
    for action in ("principal.create", "approval.request", "grant.create"):
        assert acts[action].actor == local_actor(), action
        assert acts[action].details["via"] == "local", action
    assert acts["approval.approve"].actor == "oscar"
    assert acts["approval.approve"].details["via"] == "token"


def test_local_approve_without_a_token_is_refused_and_logged(cli: Cli, local: Team) -> None:
    cli("access", "principal", "create", "kim", "--name", "Kim").ok()
    rid, digest = digest_of(cli("access", "grant", "request", "kim", "auditor", "--days", "3", "--json").ok())
    before, size = tables(local.home), log_size(local.home)
    cli("access", "approve", rid, "--digest", digest).refused("not locally", "FABTRUST_TOKEN")
    assert tables(local.home) == before
    (refusal,) = access_entries(local.home, size)
    assert (refusal.action, refusal.outcome.value, refusal.details["via"]) == (
        "approval.approve",
        "refused",
        "local",
    )


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        pytest.param("twice", "approved request", id="refused/same-person-twice"),
        pytest.param("requester", "requester cannot approve", id="refused/requester-approves"),
    ],
)
def test_local_approval_rules(cli: Cli, local: Team, case: str, needle: str) -> None:
    with Home.open(local.home, passphrase=lambda: PASSPHRASE, pin=never) as home:
        oscar = home.access.authenticate(local.oscar)
        requester = oscar if case == "requester" else Caller.local("test-setup")
        now = home.clock()
        asked = home.access.request_grant(requester, "pia", Role.AUDITOR, now, now + MONTH)
        if case == "twice":
            home.access.approve(oscar, asked.request_id, asked.digest)
    before = tables(local.home)
    cli(
        "access", "approve", asked.request_id, "--digest", asked.digest, env={"FABTRUST_TOKEN": local.oscar}
    ).refused(needle)
    assert tables(local.home) == before


def test_local_approve_with_a_wrong_digest_is_refused(cli: Cli, local: Team) -> None:
    cli("access", "principal", "create", "kim", "--name", "Kim").ok()
    rid, digest = digest_of(cli("access", "grant", "request", "kim", "auditor", "--days", "3", "--json").ok())
    before = tables(local.home)
    other = ("0" if digest[0] != "0" else "1") + digest[1:]
    cli("access", "approve", rid, "--digest", other, env={"FABTRUST_TOKEN": local.oscar}).refused("digest")
    assert tables(local.home) == before


def test_approval_show_refuses_a_request_whose_fields_do_not_match_its_digest(cli: Cli, local: Team) -> None:
    cli("access", "principal", "create", "kim", "--name", "Kim").ok()
    rid, _ = digest_of(cli("access", "grant", "request", "kim", "auditor", "--days", "3", "--json").ok())
    with sqlite3.connect(local.home / "fabtrust.db") as db:  # someone with the database edits the subject
        db.execute("UPDATE acc_approval_requests SET subject = 'principal:eve' WHERE request_id = ?", (rid,))
    cli("access", "approval", "show", rid).refused("does not match", "do not approve")


def test_local_lists_print_tables_and_json(cli: Cli) -> None:
    principals = json.loads(cli("access", "principals", "--json").ok().out)
    assert {"ada", "oscar", "pia"} <= {p["principal_id"] for p in principals}
    assert "oscar" in cli("access", "principals").ok().out
    policies = json.loads(cli("access", "policies", "--json").ok().out)
    assert {
        "action": "role.grant",
        "threshold": 1,
        "eligible_role": "security-officer",
        "ttl_seconds": 259200,
    } in (policies)
    assert json.loads(cli("access", "approvals", "--status", "pending", "--json").ok().out) == []
    cli("access", "approvals", "--status", "sideways").refused("--status")


def test_local_token_issue_prints_the_token_once_on_stdout(cli: Cli, local: Team) -> None:
    issued = cli(
        "access", "token", "issue", "aud", "--roles", "auditor", "--days", "7", "--label", "laptop"
    ).ok()
    token = issued.out.strip()
    assert issued.out == token + "\n"
    assert token.startswith("ftk_")
    assert "shown this once" in issued.err
    assert token_secret(token) not in issued.err
    with read_only(local.home) as home:
        assert home.access.authenticate(token).principal_id == "aud"
    listed = cli("access", "tokens", "--principal", "aud").ok()
    assert token not in listed.out
    assert token.split("_")[1] in listed.out


# -- remote mode ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    team: Team
    url: str
    ca: Path
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    d = tmp_path_factory.mktemp("served")
    team = make_team(d / "home")
    cert, key = self_signed(d)
    log = d / "server.log"
    with serving(team.home, cert, key, log, {"FABTRUST_KEYSTORE_PASSPHRASE": PASSPHRASE}) as port:
        yield Served(team, f"https://127.0.0.1:{port}", cert, log)
    text = log.read_text()
    assert not [s for s in team.secrets() if s in text], "a secret in the server's log"


@pytest.fixture
def remote(served: Served, config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    """No home, no passphrase: only what a person at another machine has."""
    run = make_cli(monkeypatch, config, served.team.secrets())
    monkeypatch.setenv("FABTRUST_HOME", str(tmp_path / "no-home-here"))
    return run


def as_person(served: Served, token: str) -> dict[str, str]:
    return {"FABTRUST_SERVER": served.url, "FABTRUST_TOKEN": token, "FABTRUST_CA": str(served.ca)}


def login(remote: Cli, served: Served, token: str) -> Result:
    return remote(
        "login", "--server", served.url, "--ca-cert", served.ca, "--token-stdin", stdin=token + "\n"
    )


def test_login_whoami_logout(remote: Cli, served: Served, config: Path) -> None:
    run = login(remote, served, served.team.ada).ok()
    assert "logged in as ada" in run.out
    assert "roles   administrator" in run.out
    assert "expires 20" in run.out
    assert config.stat().st_mode & 0o777 == 0o600
    assert config.parent.stat().st_mode & 0o777 == 0o700
    assert json.loads(config.read_text())["server"] == served.url

    who = remote("whoami").ok()
    assert who.out.startswith(f"ada (person) on {served.url}\n")
    assert json.loads(remote("whoami", "--json").ok().out)["roles"] == ["administrator"]

    assert "logged out" in remote("logout").ok().out
    assert not config.exists()
    assert remote("whoami").ok().out == f"{local_actor()} (local, every role)\n"
    assert "not logged in" in remote("logout").ok().out


def test_login_reads_the_token_from_the_environment_too(remote: Cli, served: Served, config: Path) -> None:
    env = {"FABTRUST_TOKEN": served.team.oscar, "FABTRUST_CA": str(served.ca)}
    assert "logged in as oscar" in remote("login", "--server", served.url, env=env).ok().out
    assert config.exists()


def test_remote_grant_flow_with_two_people(remote: Cli, served: Served) -> None:
    size = log_size(served.team.home)
    login(remote, served, served.team.ada).ok()  # ada works from her login; oscar from his environment
    oscar = as_person(served, served.team.oscar)
    remote("access", "principal", "create", "rita", "--name", "Rita").ok()
    rid, digest = digest_of(
        remote("access", "grant", "request", "rita", "release-signer", "--days", "30", "--json").ok()
    )
    pending = json.loads(remote("access", "approvals", "--status", "pending", "--json", env=oscar).ok().out)
    assert rid in {r["request_id"] for r in pending}
    shown = remote("access", "approval", "show", rid, env=oscar).ok()
    assert f"{digest}  (SHA-256 of the canonical statement, checked)" in shown.out
    approved = remote("access", "approve", rid, "--digest", digest, env=oscar).ok()
    assert "1 approval(s), 1 needed" in approved.out
    remote("access", "grant", "apply", rid).ok()
    remote("access", "grant", "apply", rid).refused("executed", "request id")  # once

    grants = json.loads(remote("access", "grants", "--principal", "rita", "--json").ok().out)
    assert [(g["role"], g["granted_by"], g["approval_id"]) for g in grants] == [
        ("release-signer", "ada", rid)
    ]
    acts = {(e.action, e.actor, e.details.get("via")) for e in access_entries(served.team.home, size)}
    assert {
        ("principal.create", "ada", "token"),
        ("approval.request", "ada", "token"),
        ("approval.approve", "oscar", "token"),
        ("grant.create", "ada", "token"),
    } <= acts
    remote("logout").ok()


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        pytest.param("twice", "approved request", id="refused/same-person-twice"),
        pytest.param("requester", "requester cannot approve", id="refused/requester-approves"),
    ],
)
def test_remote_approval_rules(remote: Cli, served: Served, case: str, needle: str) -> None:
    oscar = as_person(served, served.team.oscar)
    requester = oscar if case == "requester" else as_person(served, served.team.ada)
    asked = remote(
        "access", "grant", "request", "sam", "auditor", "--days", "2", "--json", env=requester
    ).ok()
    rid, digest = digest_of(asked)
    if case == "twice":
        remote("access", "approve", rid, "--digest", digest, env=oscar).ok()
    before = tables(served.team.home)
    refused = remote("access", "approve", rid, "--digest", digest, env=oscar).refused(needle, "request id")
    assert "(server 4" in refused.err
    assert tables(served.team.home) == before
    remote("access", "cancel", rid, env=oscar).ok()


def test_a_revoked_token_is_invalid_or_expired(remote: Cli, served: Served) -> None:
    oscar = as_person(served, served.team.oscar)
    issued = remote("access", "token", "issue", "aud", "--roles", "auditor", "--days", "1", env=oscar).ok()
    token = issued.out.strip()
    token_id = token.split("_")[1]
    assert f"token {token_id} for aud" in issued.err
    assert token_secret(token) not in issued.err
    assert remote("whoami", env=as_person(served, token)).ok().out.startswith("aud (person)")
    remote("access", "token", "revoke", token_id, env=oscar).ok()
    remote_secret = token_secret(token)
    refused = remote("whoami", env=as_person(served, token)).refused("invalid or expired", "fabtrust login")
    assert remote_secret not in refused.out + refused.err


def test_the_credentials_file_is_refused_when_others_may_read_it(
    remote: Cli, served: Served, config: Path
) -> None:
    login(remote, served, served.team.ada).ok()
    config.chmod(0o644)
    remote("whoami").refused("open to other users", "chmod 600")
    remote("access", "principals").refused("open to other users")
    config.chmod(0o600)
    assert remote("whoami").ok().out.startswith("ada ")


def test_a_damaged_credentials_file_is_refused_without_echoing_it(
    remote: Cli, served: Served, config: Path
) -> None:
    login(remote, served, served.team.ada).ok()
    config.write_text(config.read_text()[:-5])  # cut short: still holds the token, no longer JSON
    remote("whoami").refused("damaged", "fabtrust login")


def test_half_a_configuration_is_refused(remote: Cli, served: Served) -> None:
    remote("whoami", env={"FABTRUST_SERVER": served.url}).refused("FABTRUST_TOKEN is not")
    login(remote, served, served.team.ada).ok()
    remote("access", "principals", env={"FABTRUST_TOKEN": served.team.oscar}).refused(
        "without FABTRUST_SERVER"
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        pytest.param(
            ["login", "--server", "http://192.0.2.7:8443"], {}, "plain http", id="login/http-remote"
        ),
        pytest.param(["login", "--server", "http://fab.example.com"], {}, "plain http", id="login/http-name"),
        pytest.param(
            ["whoami"], {"FABTRUST_SERVER": "http://fab.example.com"}, "plain http", id="env/http-name"
        ),
        pytest.param(["login", "--server", "ftp://127.0.0.1"], {}, "https://host", id="login/ftp"),
        pytest.param(
            ["login", "--server", "https://u:p@fab.example.com"], {}, "no user", id="login/userinfo"
        ),
    ],
)
def test_a_token_never_goes_out_in_clear(
    remote: Cli, served: Served, config: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    env = {"FABTRUST_TOKEN": served.team.ada, **env}
    remote(*args, env=env).refused(needle)
    assert not config.exists()


def test_an_unverified_server_certificate_is_refused(remote: Cli, served: Served, config: Path) -> None:
    remote("login", "--server", served.url, "--token-stdin", stdin=served.team.ada).refused(
        "did not verify", "--ca-cert"
    )
    assert not config.exists()


def test_an_unreachable_server_is_one_clear_line(remote: Cli, served: Served) -> None:
    env = {"FABTRUST_SERVER": f"http://127.0.0.1:{free_port()}", "FABTRUST_TOKEN": served.team.ada}
    remote("access", "principals", env=env).refused("cannot reach")


def test_server_errors_carry_the_request_id(remote: Cli, served: Served) -> None:
    ada = as_person(served, served.team.ada)
    refused = remote("access", "approval", "show", "0" * 32, env=ada).refused(
        "no approval request", "request id"
    )
    assert "(server 404, request id " in refused.err
    remote("access", "token", "issue", "aud", "--roles", "auditor", "--days", "1", env=ada).refused(
        "access.token.manage", "server 403"
    )
    login(remote, served, served.team.ada + "x").refused("invalid or expired")


def _wait_for_http(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fabtrust serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"fabtrust serve did not come up on port {port}")


def test_plain_http_to_loopback_works(remote: Cli, served: Served, tmp_path: Path, config: Path) -> None:
    port, log = free_port(), tmp_path / "http.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABTRUST_")}
    env["FABTRUST_KEYSTORE_PASSPHRASE"] = PASSPHRASE
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [str(FABTRUST), "--home", str(served.team.home), "serve", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_http(port, proc, log)
        url = f"http://127.0.0.1:{port}"
        run = remote("login", "--server", url + "/", "--token-stdin", stdin=served.team.oscar).ok()
        assert "logged in as oscar" in run.out
        assert json.loads(config.read_text())["server"] == url
        assert remote("whoami").ok().out.startswith(f"oscar (person) on {url}\n")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_no_repr_holds_the_token(served: Served) -> None:
    token = served.team.ada
    credentials = Credentials(served.url, token, served.ca)
    with Server(credentials) as server:
        assert token_secret(token) not in repr(credentials) + repr(server) + str(credentials)
