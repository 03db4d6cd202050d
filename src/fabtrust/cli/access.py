"""``fabtrust access``: principals, role grants, API tokens, k-of-n approvals and approval policies.

Every command runs in one of two modes, chosen the same way for all of them:

- **remote**, when server credentials are configured (``FABTRUST_SERVER`` + ``FABTRUST_TOKEN``, or
  ``fabtrust login``): the command calls the server's ``/access`` routes as that person, and the
  server's guards and audit log apply;
- **local**, otherwise: the command opens the data home (``--home``) and acts as the holder of its
  key-store passphrase, who holds every role and is logged with ``via: local``
  (:meth:`fabtrust.access.service.Caller.local`).

Approvals are the exception: the key-store holder is not a quorum, so the service refuses to count
a local caller. ``fabtrust access approve`` in local mode therefore needs the approver's own API
token in ``FABTRUST_TOKEN``, checked against the local home; the approval is that person's.

Both modes answer with the same documents (the services' ``to_doc()``, which is what the API
returns), so each command has one body and one way of printing; ``--json`` prints the documents.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import typer
from rich.table import Table
from rich.text import Text

from fabtrust.access.policy import ApprovalAction, Role, parse_action, parse_role
from fabtrust.access.service import AccessService, RequestStatus, request_statement
from fabtrust.cli.context import console, err_console, local_caller, open_home
from fabtrust.cli.order import parse_time
from fabtrust.cli.remote import CA_ENV, TOKEN_ENV, Server, load_credentials, segment
from fabtrust.cli.station import print_json, say
from fabtrust.clock import parse_rfc3339, rfc3339
from fabtrust.errors import FabtrustError, InvalidInput, NotAuthorised, VerificationFailed
from fabtrust.home import Home

CA_META = "fabtrust.ca_cert"

app = typer.Typer(
    help="People, roles, tokens and approvals: on a server when logged in (`fabtrust login`), else "
    "directly on the data home as its key-store holder.",
    no_args_is_help=True,
)
principal_app = typer.Typer(help="Create and disable principals.", no_args_is_help=True)
grant_app = typer.Typer(help="Role grants, through approval requests.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
approval_app = typer.Typer(help="Review an approval request.", no_args_is_help=True)
policy_app = typer.Typer(help="Approval policies, through approval requests.", no_args_is_help=True)
app.add_typer(principal_app, name="principal")
app.add_typer(grant_app, name="grant")
app.add_typer(token_app, name="token")
app.add_typer(approval_app, name="approval")
app.add_typer(policy_app, name="policy")

Doc = dict[str, Any]


@app.callback()
def group(
    ctx: typer.Context,
    ca_cert: Path = typer.Option(
        None,
        "--ca-cert",
        envvar=CA_ENV,
        help="PEM CA certificate to verify the server's TLS certificate (remote mode).",
    ),
) -> None:
    ctx.meta[CA_META] = ca_cert


# -- the two modes ----------------------------------------------------------------------------------


class AccessBackend(Protocol):
    """The /access operations, answering with the API's documents."""

    def principals(self) -> list[Doc]: ...
    def create_principal(self, principal_id: str, display_name: str) -> Doc: ...
    def disable_principal(self, principal_id: str) -> Doc: ...
    def grants(self, principal_id: str | None) -> list[Doc]: ...
    def request_grant(
        self, principal_id: str, role: Role, not_before: datetime, not_after: datetime
    ) -> Doc: ...
    def apply_grant(self, request_id: str) -> Doc: ...
    def request_revoke(self, grant_id: str) -> Doc: ...
    def apply_revoke(self, request_id: str) -> Doc: ...
    def tokens(self, principal_id: str | None) -> list[Doc]: ...
    def issue_token(self, principal_id: str, roles: list[Role], label: str, ttl_seconds: int) -> Doc: ...
    def revoke_token(self, token_id: str) -> Doc: ...
    def approvals(self, status: RequestStatus | None) -> list[Doc]: ...
    def approval(self, request_id: str) -> Doc: ...
    def approve(self, request_id: str, digest: str) -> Doc: ...
    def cancel(self, request_id: str) -> Doc: ...
    def policies(self) -> list[Doc]: ...
    def request_policy(
        self, action: ApprovalAction, threshold: int, eligible_role: Role, ttl_seconds: int
    ) -> Doc: ...
    def apply_policy(self, request_id: str) -> Doc: ...


def _policy_doc(action: str, threshold: int, eligible_role: str, ttl_seconds: int) -> Doc:
    return {
        "action": action,
        "threshold": threshold,
        "eligible_role": eligible_role,
        "ttl_seconds": ttl_seconds,
    }


class LocalAccess:
    """The data home's access service, as the holder of its key-store passphrase."""

    def __init__(self, home: Home) -> None:
        self._access: AccessService = home.access
        self._caller = local_caller(home)

    def principals(self) -> list[Doc]:
        return [p.to_doc() for p in self._access.principals()]

    def create_principal(self, principal_id: str, display_name: str) -> Doc:
        return self._access.create_principal(self._caller, principal_id, display_name).to_doc()

    def disable_principal(self, principal_id: str) -> Doc:
        return self._access.disable_principal(self._caller, principal_id).to_doc()

    def grants(self, principal_id: str | None) -> list[Doc]:
        return [g.to_doc() for g in self._access.grants(principal_id)]

    def request_grant(self, principal_id: str, role: Role, not_before: datetime, not_after: datetime) -> Doc:
        return self._access.request_grant(self._caller, principal_id, role, not_before, not_after).to_doc()

    def apply_grant(self, request_id: str) -> Doc:
        return self._access.apply_grant(self._caller, request_id).to_doc()

    def request_revoke(self, grant_id: str) -> Doc:
        return self._access.request_revoke(self._caller, grant_id).to_doc()

    def apply_revoke(self, request_id: str) -> Doc:
        return self._access.apply_revoke(self._caller, request_id).to_doc()

    def tokens(self, principal_id: str | None) -> list[Doc]:
        return [t.to_doc() for t in self._access.tokens(principal_id)]

    def issue_token(self, principal_id: str, roles: list[Role], label: str, ttl_seconds: int) -> Doc:
        issued = self._access.issue_token(
            self._caller, principal_id, roles, label=label, ttl=timedelta(seconds=ttl_seconds)
        )
        return {"token": issued.token, "token_id": issued.token_id, "expires_at": rfc3339(issued.expires_at)}

    def revoke_token(self, token_id: str) -> Doc:
        return self._access.revoke_token(self._caller, token_id).to_doc()

    def approvals(self, status: RequestStatus | None) -> list[Doc]:
        return [r.to_doc() for r in self._access.requests(status)]

    def approval(self, request_id: str) -> Doc:
        return self._access.show_request(request_id).to_doc()

    def approve(self, request_id: str, digest: str) -> Doc:
        """As the person whose token is in FABTRUST_TOKEN: the service refuses the key-store holder
        (and logs the refusal), so without a token the answer is that refusal, with the way out."""
        token = os.environ.get(TOKEN_ENV)
        if not token:
            try:
                return self._access.approve(self._caller, request_id, digest).to_doc()
            except NotAuthorised as exc:
                raise NotAuthorised(
                    f"{exc.message}: set {TOKEN_ENV} to your own API token to approve on this home"
                ) from None
        caller = self._access.authenticate(token)
        return self._access.approve(caller, request_id, digest).to_doc()

    def cancel(self, request_id: str) -> Doc:
        return self._access.cancel(self._caller, request_id).to_doc()

    def policies(self) -> list[Doc]:
        return [
            _policy_doc(p.action.value, p.threshold, p.eligible_role.value, p.ttl_seconds)
            for p in self._access.policies()
        ]

    def request_policy(
        self, action: ApprovalAction, threshold: int, eligible_role: Role, ttl_seconds: int
    ) -> Doc:
        return self._access.request_approval_policy(
            self._caller, action, threshold=threshold, eligible_role=eligible_role, ttl_seconds=ttl_seconds
        ).to_doc()

    def apply_policy(self, request_id: str) -> Doc:
        p = self._access.apply_approval_policy(self._caller, request_id)
        return _policy_doc(p.action.value, p.threshold, p.eligible_role.value, p.ttl_seconds)


def _doc(answer: Any) -> Doc:
    if not isinstance(answer, dict):
        raise VerificationFailed("the server's answer is not the JSON object expected")
    return answer


def _docs(answer: Any) -> list[Doc]:
    if not isinstance(answer, list):
        raise VerificationFailed("the server's answer is not the JSON list expected")
    return [_doc(d) for d in answer]


class RemoteAccess:
    """The server's /access routes, as the person whose token the credentials hold."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def principals(self) -> list[Doc]:
        return _docs(self._server.get("/access/principals"))

    def create_principal(self, principal_id: str, display_name: str) -> Doc:
        body = {"principal_id": principal_id, "display_name": display_name}
        return _doc(self._server.post("/access/principals", body))

    def disable_principal(self, principal_id: str) -> Doc:
        return _doc(self._server.post(f"/access/principals/{segment(principal_id)}/disable"))

    def grants(self, principal_id: str | None) -> list[Doc]:
        return _docs(self._server.get("/access/grants", {"principal": principal_id}))

    def request_grant(self, principal_id: str, role: Role, not_before: datetime, not_after: datetime) -> Doc:
        body = {
            "principal_id": principal_id,
            "role": role.value,
            "not_before": rfc3339(not_before),
            "not_after": rfc3339(not_after),
        }
        return _doc(self._server.post("/access/grants/requests", body))

    def apply_grant(self, request_id: str) -> Doc:
        return _doc(self._server.post(f"/access/grants/requests/{segment(request_id)}/apply"))

    def request_revoke(self, grant_id: str) -> Doc:
        return _doc(self._server.post("/access/grants/revocations", {"grant_id": grant_id}))

    def apply_revoke(self, request_id: str) -> Doc:
        return _doc(self._server.post(f"/access/grants/revocations/{segment(request_id)}/apply"))

    def tokens(self, principal_id: str | None) -> list[Doc]:
        return _docs(self._server.get("/access/tokens", {"principal": principal_id}))

    def issue_token(self, principal_id: str, roles: list[Role], label: str, ttl_seconds: int) -> Doc:
        body = {
            "principal_id": principal_id,
            "roles": [r.value for r in roles],
            "label": label,
            "ttl_seconds": ttl_seconds,
        }
        return _doc(self._server.post("/access/tokens", body))

    def revoke_token(self, token_id: str) -> Doc:
        return _doc(self._server.delete(f"/access/tokens/{segment(token_id)}"))

    def approvals(self, status: RequestStatus | None) -> list[Doc]:
        return _docs(self._server.get("/access/approvals", {"status": status.value if status else None}))

    def approval(self, request_id: str) -> Doc:
        return _doc(self._server.get(f"/access/approvals/{segment(request_id)}"))

    def approve(self, request_id: str, digest: str) -> Doc:
        return _doc(self._server.post(f"/access/approvals/{segment(request_id)}/approve", {"digest": digest}))

    def cancel(self, request_id: str) -> Doc:
        return _doc(self._server.post(f"/access/approvals/{segment(request_id)}/cancel"))

    def policies(self) -> list[Doc]:
        return _docs(self._server.get("/access/policies"))

    def request_policy(
        self, action: ApprovalAction, threshold: int, eligible_role: Role, ttl_seconds: int
    ) -> Doc:
        body = {
            "action": action.value,
            "threshold": threshold,
            "eligible_role": eligible_role.value,
            "ttl_seconds": ttl_seconds,
        }
        return _doc(self._server.post("/access/policies/requests", body))

    def apply_policy(self, request_id: str) -> Doc:
        return _doc(self._server.post(f"/access/policies/requests/{segment(request_id)}/apply"))


@contextmanager
def backend(ctx: typer.Context) -> Iterator[AccessBackend]:
    """Remote when server credentials are configured, else local on the data home."""
    ca_cert = ctx.meta.get(CA_META)
    credentials = load_credentials(ca_cert if isinstance(ca_cert, Path) else None)
    if credentials is not None:
        with Server(credentials) as server:
            yield RemoteAccess(server)
    else:
        with open_home(ctx) as home:
            yield LocalAccess(home)


# -- printing ---------------------------------------------------------------------------------------

JSON_HELP = "Print the JSON document(s) instead, for scripts."
_FRACTION = re.compile(r"\.\d+Z$")


def _t(value: Any) -> str:
    """An RFC 3339 time to the second, or '-'."""
    return _FRACTION.sub("Z", value) if isinstance(value, str) else "-"


def _table(*columns: str) -> Table:
    """A table whose id columns (``*`` at the end of the name) are never cut (they are copied into
    the next command) and whose other cells fold rather than lose text."""
    table = Table()
    for name in columns:
        if name.endswith("*"):
            table.add_column(name[:-1], no_wrap=True)
        else:
            table.add_column(name, overflow="fold")
    return table


def _s(value: Any) -> Text:
    """A cell as plain text (never markup)."""
    return Text("-" if value is None else str(value))


def _request_lines(doc: Doc) -> None:
    rid = doc.get("request_id")
    say(f"approval request {rid}: {doc.get('action')} on {doc.get('subject')}, {doc.get('status')}")
    say(f"  digest     {doc.get('digest')}")
    say(
        f"  needs      {doc.get('threshold')} approval(s) by {doc.get('eligible_role')}s other than "
        f"{doc.get('requested_by')}, before {_t(doc.get('expires_at'))}"
    )


def _next_step(doc: Doc, apply: str) -> None:
    rid = doc.get("request_id")
    say(f"  next: an approver reviews it (`fabtrust access approval show {rid}`) and approves it")
    say(f"        (`fabtrust access approve {rid} --digest {doc.get('digest')}`); then `{apply} {rid}`")


def _grant_line(doc: Doc, what: str) -> None:
    say(
        f"grant {doc.get('grant_id')} {what}: {doc.get('principal_id')} holds {doc.get('role')} "
        f"from {_t(doc.get('not_before'))} until {_t(doc.get('not_after'))}"
    )


def _statement_digest(doc: Doc) -> str:
    """SHA-256 of the request statement rebuilt from the fields shown: what the approver reviews
    must be what the digest names (a server or database that shows one request and stores another
    is caught here)."""
    try:
        statement = request_statement(
            action=parse_action(doc["action"]),
            subject=doc["subject"],
            parameters=doc["parameters"],
            requested_by=doc["requested_by"],
            created_at=parse_rfc3339(doc["created_at"]),
            expires_at=parse_rfc3339(doc["expires_at"]),
            threshold=doc["threshold"],
            eligible_role=parse_role(doc["eligible_role"]),
        )
    except (KeyError, TypeError, ValueError, FabtrustError):
        raise VerificationFailed("the approval request shown is malformed; do not approve it") from None
    return hashlib.sha256(statement).hexdigest()


# -- principals -------------------------------------------------------------------------------------


@app.command("principals")
def principals(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Every principal: people, stations and devices."""
    with backend(ctx) as access:
        docs = access.principals()
    if as_json:
        print_json(docs)
        return
    table = _table("principal*", "kind", "name", "created", "by", "disabled")
    for p in docs:
        table.add_row(
            _s(p.get("principal_id")),
            _s(p.get("kind")),
            _s(p.get("display_name")),
            _t(p.get("created_at")),
            _s(p.get("created_by")),
            _t(p.get("disabled_at")),
        )
    console.print(table)


@principal_app.command("create")
def principal_create(
    ctx: typer.Context,
    principal_id: str = typer.Argument(..., help="A person (ada), station:<id> or device:<serial>."),
    name: str = typer.Option(..., "--name", help="Display name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A principal; it holds no role until a grant is requested, approved and applied."""
    with backend(ctx) as access:
        doc = access.create_principal(principal_id, name)
    if as_json:
        print_json(doc)
        return
    say(f"principal {doc.get('principal_id')} ({doc.get('kind')}, {doc.get('display_name')}) created")
    say(f"  next: `fabtrust access grant request {doc.get('principal_id')} ROLE --days N`")


@principal_app.command("disable")
def principal_disable(
    ctx: typer.Context,
    principal_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """At once and for good: the principal authenticates to nothing and holds no role."""
    with backend(ctx) as access:
        doc = access.disable_principal(principal_id)
    if as_json:
        print_json(doc)
        return
    say(f"principal {doc.get('principal_id')} disabled at {_t(doc.get('disabled_at'))}")


# -- grants -----------------------------------------------------------------------------------------


@app.command("grants")
def grants(
    ctx: typer.Context,
    principal: str = typer.Option(None, "--principal", help="Only this principal's."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Role grants (active, future, ended and revoked)."""
    with backend(ctx) as access:
        docs = access.grants(principal)
    if as_json:
        print_json(docs)
        return
    table = _table(
        "grant*", "principal", "role", "not before", "not after", "granted by", "request", "revoked"
    )
    for g in docs:
        table.add_row(
            _s(g.get("grant_id")),
            _s(g.get("principal_id")),
            _s(g.get("role")),
            _t(g.get("not_before")),
            _t(g.get("not_after")),
            _s(g.get("granted_by")),
            _s(g.get("approval_id") or "bootstrap"),
            _t(g.get("revoked_at")),
        )
    console.print(table)


@grant_app.command("request")
def grant_request(
    ctx: typer.Context,
    principal_id: str = typer.Argument(...),
    role: str = typer.Argument(..., help=f"One of: {', '.join(Role)}."),
    not_before: str = typer.Option(None, "--not-before", help="Start, RFC 3339 (default now)."),
    not_after: str = typer.Option(None, "--not-after", help="End, RFC 3339."),
    days: int = typer.Option(None, "--days", min=1, max=3650, help="End: this many days after the start."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Ask for a role grant (a role.grant approval request); apply it once approved."""
    wanted = parse_role(role)
    if (not_after is None) == (days is None):
        raise InvalidInput("give the grant's end: --not-after or --days (one of them)")
    start = (
        parse_time(not_before, "--not-before")
        if not_before is not None
        else datetime.now(UTC).replace(microsecond=0)
    )
    end = parse_time(not_after, "--not-after") if not_after is not None else start + timedelta(days=days)
    with backend(ctx) as access:
        doc = access.request_grant(principal_id, wanted, start, end)
    if as_json:
        print_json(doc)
        return
    _request_lines(doc)
    _next_step(doc, "fabtrust access grant apply")


@grant_app.command("apply")
def grant_apply(
    ctx: typer.Context,
    request_id: str = typer.Argument(..., help="The approved role.grant request."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Carry out an approved role.grant request, once."""
    with backend(ctx) as access:
        doc = access.apply_grant(request_id)
    if as_json:
        print_json(doc)
        return
    _grant_line(doc, "made")


@grant_app.command("revoke")
def grant_revoke(
    ctx: typer.Context,
    grant_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Ask for a grant to be revoked (a role.revoke approval request); `grant revoke-apply` it once
    approved."""
    with backend(ctx) as access:
        doc = access.request_revoke(grant_id)
    if as_json:
        print_json(doc)
        return
    _request_lines(doc)
    _next_step(doc, "fabtrust access grant revoke-apply")


@grant_app.command("revoke-apply")
def grant_revoke_apply(
    ctx: typer.Context,
    request_id: str = typer.Argument(..., help="The approved role.revoke request."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Carry out an approved role.revoke request, once."""
    with backend(ctx) as access:
        doc = access.apply_revoke(request_id)
    if as_json:
        print_json(doc)
        return
    _grant_line(doc, f"revoked at {_t(doc.get('revoked_at'))}")


# -- tokens -----------------------------------------------------------------------------------------


@app.command("tokens")
def tokens(
    ctx: typer.Context,
    principal: str = typer.Option(
        None, "--principal", help="Only this principal's. Default: your own (remote), every one (local)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """API tokens: scope and lifetime (never a secret: only hashes are stored)."""
    with backend(ctx) as access:
        docs = access.tokens(principal)
    if as_json:
        print_json(docs)
        return
    table = _table("token*", "principal", "roles", "label", "created", "by", "expires", "revoked")
    for t in docs:
        roles = t.get("roles")
        table.add_row(
            _s(t.get("token_id")),
            _s(t.get("principal_id")),
            _s(", ".join(map(str, roles)) if isinstance(roles, list) else roles),
            _s(t.get("label")),
            _t(t.get("created_at")),
            _s(t.get("created_by")),
            _t(t.get("expires_at")),
            _t(t.get("revoked_at")),
        )
    console.print(table)


@token_app.command("issue")
def token_issue(
    ctx: typer.Context,
    principal_id: str = typer.Argument(...),
    roles: str = typer.Option(..., "--roles", help="The token's scope: roles, comma-separated."),
    days: int = typer.Option(..., "--days", min=1, max=366, help="Lifetime (the home allows at most 90)."),
    label: str = typer.Option("cli", "--label", help="What the token is for (a device, a script)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A new token, printed once on stdout (alone on its line, for `TOKEN=$(...)`); it is never stored
    or shown again. What it is goes to stderr."""
    scope = [parse_role(r.strip()) for r in roles.split(",") if r.strip()]
    if not scope:
        raise InvalidInput("--roles names at least one role")
    with backend(ctx) as access:
        doc = access.issue_token(principal_id, scope, label, days * 86400)
    token = doc.get("token")
    if not isinstance(token, str):
        raise VerificationFailed("the answer holds no token")
    if as_json:
        print_json(doc)
        return
    err_console.print(
        f"token {doc.get('token_id')} for {principal_id} ({', '.join(scope)}), until "
        f"{_t(doc.get('expires_at'))}; shown this once, keep it secret:",
        markup=False,
    )
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: str = typer.Argument(..., help="The token's id (16 hex digits), never the token."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Revoke a token: your own, or (access.token.manage) anyone's."""
    with backend(ctx) as access:
        doc = access.revoke_token(token_id)
    if as_json:
        print_json(doc)
        return
    say(f"token {doc.get('token_id')} of {doc.get('principal_id')} revoked at {_t(doc.get('revoked_at'))}")


# -- approvals --------------------------------------------------------------------------------------


def _status(value: str | None) -> RequestStatus | None:
    if value is None:
        return None
    try:
        return RequestStatus(value)
    except ValueError:
        raise InvalidInput(f"--status is one of: {', '.join(RequestStatus)}") from None


@app.command("approvals")
def approvals(
    ctx: typer.Context,
    status: str = typer.Option(None, "--status", help=f"Only these: {', '.join(RequestStatus)}."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Approval requests: what is asked, by whom, and how many approvals it has."""
    wanted = _status(status)
    with backend(ctx) as access:
        docs = access.approvals(wanted)
    if as_json:
        print_json(docs)
        return
    table = _table("request*", "action", "subject", "requested by", "status", "approvals", "by", "expires")
    for r in docs:
        given = r.get("approvals")
        count = len(given) if isinstance(given, list) else "?"
        table.add_row(
            _s(r.get("request_id")),
            _s(r.get("action")),
            _s(r.get("subject")),
            _s(r.get("requested_by")),
            _s(r.get("status")),
            _s(f"{count} of {r.get('threshold')}"),
            _s(r.get("eligible_role")),
            _t(r.get("expires_at")),
        )
    console.print(table)


@approval_app.command("show")
def approval_show(
    ctx: typer.Context,
    request_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """What an approver reviews: the request statement's fields and its SHA-256 digest, recomputed
    here from the fields shown (a mismatch is refused). Approve with that digest."""
    with backend(ctx) as access:
        doc = access.approval(request_id)
    digest = _statement_digest(doc)
    if digest != doc.get("digest"):
        raise VerificationFailed(
            f"approval request {request_id}: its digest does not match the fields shown; do not approve it"
        )
    if as_json:
        print_json(doc)
        return
    say(f"approval request {doc['request_id']} ({doc.get('status')})")
    say(f"  action        {doc['action']}")
    say(f"  subject       {doc['subject']}")
    params = doc["parameters"]
    if isinstance(params, dict) and params:
        say("  parameters")
        for key in sorted(params):
            say(f"    {key:<12}  {params[key]}")
    say(f"  requested by  {doc['requested_by']} at {doc['created_at']}")
    say(f"  expires       {doc['expires_at']}")
    say(f"  threshold     {doc['threshold']} approval(s) by {doc['eligible_role']}s, the requester excluded")
    given = doc.get("approvals")
    for a in given if isinstance(given, list) else []:
        if isinstance(a, dict):
            say(f"  approved by   {a.get('principal_id')} at {_t(a.get('approved_at'))}")
    if doc.get("executed_by"):
        say(f"  executed by   {doc['executed_by']} at {_t(doc.get('executed_at'))}")
    if doc.get("cancelled_by"):
        say(f"  cancelled by  {doc['cancelled_by']} at {_t(doc.get('cancelled_at'))}")
    say(f"  digest        {digest}  (SHA-256 of the canonical statement, checked)")
    if doc.get("status") == RequestStatus.PENDING.value:
        say(f"to approve it: fabtrust access approve {doc['request_id']} --digest {digest}")


@app.command("approve")
def approve(
    ctx: typer.Context,
    request_id: str = typer.Argument(...),
    digest: str = typer.Option(
        ..., "--digest", help="The SHA-256 you reviewed (`fabtrust access approval show`)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Approve a request by the digest of the statement you reviewed.

    Approvals count people: on a server you approve as the logged-in person; on a local data home
    the key-store holder cannot approve, so set FABTRUST_TOKEN to your own API token (checked
    against that home) and the approval is yours. Never the requester's own request, and once per
    person."""
    with backend(ctx) as access:
        doc = access.approve(request_id, digest.strip().lower())
    if as_json:
        print_json(doc)
        return
    given = doc.get("approvals")
    count = len(given) if isinstance(given, list) else "?"
    say(
        f"approved request {doc.get('request_id')} ({doc.get('action')} on {doc.get('subject')}): "
        f"{count} approval(s), {doc.get('threshold')} needed"
    )


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    request_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Withdraw a pending request: its requester, or a security officer."""
    with backend(ctx) as access:
        doc = access.cancel(request_id)
    if as_json:
        print_json(doc)
        return
    say(f"approval request {doc.get('request_id')} cancelled by {doc.get('cancelled_by')}")


# -- approval policies ------------------------------------------------------------------------------


@app.command("policies")
def policies(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The approval policy in force for every action."""
    with backend(ctx) as access:
        docs = access.policies()
    if as_json:
        print_json(docs)
        return
    table = _table("action", "threshold", "eligible role", "request lives")
    for p in docs:
        ttl = p.get("ttl_seconds")
        table.add_row(
            _s(p.get("action")),
            _s(p.get("threshold")),
            _s(p.get("eligible_role")),
            _s(f"{ttl // 3600} h" if isinstance(ttl, int) else ttl),
        )
    console.print(table)


@policy_app.command("request")
def policy_request(
    ctx: typer.Context,
    action: str = typer.Argument(..., help=f"One of: {', '.join(ApprovalAction)}."),
    threshold: int = typer.Option(..., "--threshold", help="Approvers needed besides the requester."),
    role: str = typer.Option(..., "--role", help="The role an approver must hold."),
    ttl_hours: int = typer.Option(..., "--ttl-hours", min=1, help="How long a request stays open."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Ask for a new approval policy (an approval-policy.set request)."""
    act, eligible = parse_action(action), parse_role(role)
    with backend(ctx) as access:
        doc = access.request_policy(act, threshold, eligible, ttl_hours * 3600)
    if as_json:
        print_json(doc)
        return
    _request_lines(doc)
    _next_step(doc, "fabtrust access policy apply")


@policy_app.command("apply")
def policy_apply(
    ctx: typer.Context,
    request_id: str = typer.Argument(..., help="The approved approval-policy.set request."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Carry out an approved approval-policy.set request, once."""
    with backend(ctx) as access:
        doc = access.apply_policy(request_id)
    if as_json:
        print_json(doc)
        return
    say(
        f"policy for {doc.get('action')}: {doc.get('threshold')} approval(s) by "
        f"{doc.get('eligible_role')}s, requests open {doc.get('ttl_seconds')} s"
    )
