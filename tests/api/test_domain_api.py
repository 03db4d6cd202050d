"""The OEM's domain acts over HTTP (``/production``, ``/firmware``, ``/pki/cas``), driven the way a
team drives them: an act gated by a k-of-n approval is asked for by one person
(``POST .../approval``, ``.../quota/requests``, ``.../publication``, ``.../revocation``), approved by
others under ``/access/approvals/{id}/approve`` with the digest they reviewed, and carried out by
spending the approved request, once.

Outcomes asserted: the status and body of every answer; the order, release and CA as the reads
show them afterwards; the approval request pending after a refusal and executed after the act;
the domain audit entries naming the principal as actor and the request spent; and the refusals
(own approval, wrong digest, too few approvals, other terms, another action, replay, missing or
insufficient credentials) answered with the error shape while nothing changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from fabtrust.access import ApprovalAction, Role
from fabtrust.api.app import create_app
from fabtrust.api.limits import RateLimiter
from fabtrust.device.vendor import SiliconVendor
from fabtrust.home import Home
from fabtrust.production.oem import DEFAULT_APPROVAL_LIMIT
from fabtrust.tlog.audit import AuditEntry
from tests.approvals import person, token_for
from tests.production.line import FIRMWARE, Clock, enroll, found_product, make_home
from tests.team import bearer, team_tokens

PLANNER, SIGNER, OFFICER = Role.PRODUCTION_PLANNER, Role.RELEASE_SIGNER, Role.SECURITY_OFFICER
ZERO_DIGEST = "0" * 64
DRAFT = "widget-1.1.0"  # a release with enough signer approvals, not yet published


@dataclass
class Domain:
    home: Home
    clock: Clock
    client: TestClient
    release: str  # the published release orders are for
    tokens: dict[str, str]  # by person name

    def call(self, method: str, path: str, who: str | None, body: Any = None) -> Response:
        headers = bearer(self.tokens[who]) if who is not None else {}
        response: Response = self.client.request(method, path, headers=headers, json=body)
        return response

    def ok(self, method: str, path: str, who: str, body: Any = None, status: int = 200) -> Any:
        r = self.call(method, path, who, body)
        assert r.status_code == status, r.text
        return r.json()

    def approve(self, request_id: str, who: str, digest: str) -> Response:
        return self.call("POST", f"/access/approvals/{request_id}/approve", who, {"digest": digest})

    def request_status(self, request_id: str) -> dict[str, Any]:
        # (reading approval requests takes approval.request, which an auditor lacks: the administrator)
        doc: dict[str, Any] = self.ok("GET", f"/access/approvals/{request_id}", "ada")
        return doc


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Domain]:
    d = tmp_path_factory.mktemp("domain-api")
    now = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(now)
    vendor = SiliconVendor("Trusted Silicon", now=now - timedelta(days=30))
    oem = make_home(d / "oem", "oem-admin", clock)
    station = make_home(d / "line1", "operator-1", clock)
    try:
        release = found_product(oem, vendor)
        enroll(oem, station, "line1")
    finally:
        station.close()
    # a second product, whose CA the revocation test revokes (the widget line goes on working)
    oem.production.create_product(
        "gadget",
        description="Gadget",
        device_domain="gadget.devices.acme.example",
        vendor_roots=[vendor.root],
        organization="Acme",
    )
    # a draft release the release service's signers approved (2 of 3), to be published over HTTP
    draft = oem.releases.create("widget", "1.1.0", FIRMWARE + b"1.1.0\n", 1, "widget 1.1.0")
    for signer in ("alice", "bob"):
        oem.releases.approve(draft.release_id, signer)
    assert draft.release_id == DRAFT
    team = team_tokens(oem)  # pia, sam, oscar, aud, ...
    tokens = {
        "pia": team[PLANNER],
        "sam": team[SIGNER],
        "oscar": team[OFFICER],
        "aud": team[Role.AUDITOR],
        "ada": team[Role.ADMINISTRATOR],
    }
    for name, role in (("quinn", PLANNER), ("rita", SIGNER), ("ravi", SIGNER), ("otto", OFFICER)):
        person(oem, name, role)
        tokens[name] = token_for(oem, name, role)
    app = create_app(oem, rate_limit=RateLimiter(rate=1e9, burst=10**9))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Domain(oem, clock, client, release, tokens)
    finally:
        oem.close()


def refused(response: Response, status: int, code: str, match: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}, body
    assert body["error"] == code, body
    if match is not None:
        assert match in body["message"], body
    message: str = body["message"]
    return message


def entries(home: Home, action: str) -> list[AuditEntry]:
    size = home.log.size()
    parsed = [AuditEntry.parse(raw) for raw in home.log.entries(0, size)]
    return [e for e in parsed if e.action == action]


def new_order(s: Domain, order_id: str, quota: int, who: str = "pia") -> dict[str, Any]:
    now = s.clock()
    doc: dict[str, Any] = s.ok(
        "POST",
        "/production/orders",
        who,
        {
            "order_id": order_id,
            "product": "widget",
            "release_id": s.release,
            "stations": ["line1"],
            "quota": quota,
            "not_before": now.isoformat(),
            "not_after": (now + timedelta(days=7)).isoformat(),
        },
        status=201,
    )
    return doc


def order_terms(order: dict[str, Any]) -> dict[str, Any]:
    """What the approvers of an order.approve request review: the order's terms."""
    return {
        "order_id": order["order_id"],
        "product": order["product"],
        "release": order["release_id"],
        "stations": order["stations"],
        "quota": order["quota"],
        "not_before": order["not_before"],
        "not_after": order["not_after"],
    }


# ---------------------------------------------------------------------------------------------------
# production: an order above the approval limit


def test_an_order_above_the_limit_is_approved_by_a_second_planner(domain: Domain) -> None:
    s = domain
    quota = DEFAULT_APPROVAL_LIMIT + 10_000
    order = new_order(s, "po-big", quota)
    assert order["status"] == "awaiting-approval"
    assert (order["created_by"], order["approved_by"], order["quota"]) == ("pia", None, quota)
    assert (order["release_id"], order["stations"]) == (s.release, ["line1"])

    asked = s.ok("POST", "/production/orders/po-big/approval", "pia", status=201)
    rid, digest = asked["request_id"], asked["digest"]
    assert (asked["action"], asked["subject"], asked["status"]) == (
        "order.approve",
        "order:po-big",
        "pending",
    )
    assert (asked["requested_by"], asked["threshold"], asked["eligible_role"]) == ("pia", 1, PLANNER.value)
    assert asked["parameters"] == order_terms(order)

    # the two-person rule, a digest of something else, and approving with the wrong role
    refused(s.approve(rid, "pia", digest), 422, "policy_violation", "two-person")
    refused(s.approve(rid, "quinn", ZERO_DIGEST), 422, "verification_failed", "digest differs")
    refused(s.approve(rid, "sam", digest), 403, "not_authorised")
    # spent before anyone approved: too few approvals, nothing spent
    early = s.call("POST", "/production/orders/po-big/approve", "pia", {"approval": rid})
    refused(early, 422, "policy_violation", "0 valid approval")
    assert s.request_status(rid)["approvals"] == []

    given = s.approve(rid, "quinn", digest)
    assert given.status_code == 200, given.text
    assert [a["principal_id"] for a in given.json()["approvals"]] == ["quinn"]
    assert given.json()["status"] == "pending"

    # an auditor reads everything and approves nothing; no token is nobody
    refused(
        s.call("POST", "/production/orders/po-big/approve", "aud", {"approval": rid}), 403, "not_authorised"
    )
    refused(
        s.call("POST", "/production/orders/po-big/approve", None, {"approval": rid}), 401, "unauthenticated"
    )
    assert s.ok("GET", "/production/orders/po-big", "aud")["status"] == "awaiting-approval"
    assert s.request_status(rid)["status"] == "pending"

    done = s.ok("POST", "/production/orders/po-big/approve", "pia", {"approval": rid})
    assert (done["status"], done["approved_by"], done["created_by"]) == ("approved", "quinn", "pia")
    assert done["quota"] == quota
    assert s.ok("GET", "/production/orders/po-big", "aud") == done
    executed = s.request_status(rid)
    assert (executed["status"], executed["executed_by"]) == ("executed", "pia")

    replay = s.call("POST", "/production/orders/po-big/approve", "pia", {"approval": rid})
    refused(replay, 409, "conflict")
    assert s.ok("GET", "/production/orders/po-big", "aud") == done

    approvals = [e for e in entries(s.home, "order.approve") if e.outcome.value == "ok"]
    assert len(approvals) == 1
    entry = approvals[0]
    assert (entry.actor, entry.subject) == ("pia", "order:po-big")
    assert entry.details["request_id"] == rid
    assert entry.details["requested_by"] == "pia"
    assert entry.details["approvers"] == ["quinn"]


def test_an_approval_for_other_terms_or_another_act_approves_no_order(domain: Domain) -> None:
    s = domain
    order = new_order(s, "po-other", DEFAULT_APPROVAL_LIMIT + 1)
    assert order["status"] == "awaiting-approval"
    subject = "order:po-other"

    # a quota raise cannot be asked for while the order awaits its approval ...
    refused(
        s.call("POST", "/production/orders/po-other/quota/requests", "pia", {"quota": 20_000}),
        422,
        "policy_violation",
        "only an approved order's quota rises",
    )
    # ... and a quota.raise request made anyway (in-process), approved, is no order approval
    pia = person(s.home, "pia", PLANNER)
    raise_terms = {**order_terms(order), "new_quota": 20_000}
    raised = s.home.access.request(pia, ApprovalAction.QUOTA_RAISE, subject, raise_terms)
    assert s.approve(raised.request_id, "quinn", raised.digest).status_code == 200
    raise_ask = {"request_id": raised.request_id}
    wrong_act = s.call(
        "POST", "/production/orders/po-other/approve", "pia", {"approval": raise_ask["request_id"]}
    )
    refused(wrong_act, 422, "policy_violation", "quota.raise")

    # an order.approve request for terms the server never computed (one unit fewer), approved
    terms = {**order_terms(order), "quota": order["quota"] - 1}
    other = s.home.access.request(pia, ApprovalAction.ORDER_APPROVE, subject, terms)
    assert s.approve(other.request_id, "quinn", other.digest).status_code == 200
    other_terms = s.call("POST", "/production/orders/po-other/approve", "pia", {"approval": other.request_id})
    refused(other_terms, 422, "policy_violation", "other terms")

    # the approval of another order's terms
    new_order(s, "po-third", DEFAULT_APPROVAL_LIMIT + 2)
    elsewhere = s.ok("POST", "/production/orders/po-third/approval", "pia", status=201)
    wrong_order = s.call(
        "POST", "/production/orders/po-other/approve", "pia", {"approval": elsewhere["request_id"]}
    )
    refused(wrong_order, 422, "policy_violation", "order:po-third")

    # an unknown request id is not found; a malformed one is bad input
    refused(
        s.call("POST", "/production/orders/po-other/approve", "pia", {"approval": "a" * 32}), 404, "not_found"
    )
    refused(
        s.call("POST", "/production/orders/po-other/approve", "pia", {"approval": "nope"}),
        400,
        "invalid_input",
    )

    assert s.ok("GET", "/production/orders/po-other", "aud") == order  # unchanged
    for rid in (raise_ask["request_id"], other.request_id):
        assert s.request_status(rid)["status"] == "pending"  # not spent
    refusals = [e for e in entries(s.home, "order.approve") if e.subject == subject]
    assert [e.outcome.value for e in refusals] == ["refused"] * 4
    assert all(e.actor == "pia" for e in refusals)
    assert [e.details.get("request_id") for e in refusals[:2]] == [raise_ask["request_id"], other.request_id]


# ---------------------------------------------------------------------------------------------------
# production: a quota raise


def test_a_quota_raise_needs_a_second_planner_and_holds_to_its_quota(domain: Domain) -> None:
    s = domain
    order = new_order(s, "po-raise", 100)
    assert order["status"] == "approved"

    asked = s.ok("POST", "/production/orders/po-raise/quota/requests", "pia", {"quota": 150}, 201)
    rid = asked["request_id"]
    assert (asked["action"], asked["subject"], asked["threshold"]) == ("quota.raise", "order:po-raise", 1)
    assert asked["parameters"] == {**order_terms(order), "new_quota": 150}
    refused(s.approve(rid, "pia", asked["digest"]), 422, "policy_violation", "two-person")
    assert s.approve(rid, "quinn", asked["digest"]).status_code == 200

    path = "/production/orders/po-raise/quota"
    refused(
        s.call("POST", path, "pia", {"quota": 160, "approval": rid}), 422, "policy_violation", "other terms"
    )
    refused(
        s.call("POST", path, "pia", {"quota": 50, "approval": rid}), 400, "invalid_input", "above the current"
    )
    refused(
        s.call("POST", path, "pia", {"quota": 100, "approval": rid}),
        400,
        "invalid_input",
        "above the current",
    )
    refused(s.call("POST", path, "pia", {"quota": "150", "approval": rid}), 400, "invalid_input")
    refused(s.call("POST", path, "aud", {"quota": 150, "approval": rid}), 403, "not_authorised")
    assert s.ok("GET", "/production/orders/po-raise", "aud")["quota"] == 100
    assert s.request_status(rid)["status"] == "pending"

    raised = s.ok("POST", path, "pia", {"quota": 150, "approval": rid})
    assert (raised["quota"], raised["status"], raised["approved_by"]) == (150, "approved", None)
    assert s.ok("GET", "/production/orders/po-raise", "aud")["quota"] == 150
    assert s.request_status(rid)["executed_by"] == "pia"
    # spent once: the same approval raises no further
    refused(s.call("POST", path, "pia", {"quota": 200, "approval": rid}), 409, "conflict")
    assert s.ok("GET", "/production/orders/po-raise", "aud")["quota"] == 150

    ok = [e for e in entries(s.home, "order.raise-quota") if e.outcome.value == "ok"]
    assert len(ok) == 1
    assert (ok[0].actor, ok[0].subject) == ("pia", "order:po-raise")
    assert (ok[0].details["quota"], ok[0].details["new_quota"], ok[0].details["request_id"]) == (
        100,
        150,
        rid,
    )
    assert ok[0].details["approvers"] == ["quinn"]


# ---------------------------------------------------------------------------------------------------
# firmware: publishing a release


def test_a_release_is_published_by_a_signer_with_two_others_approving(domain: Domain) -> None:
    s = domain
    before = s.ok("GET", f"/firmware/releases/{DRAFT}", "sam")
    assert before["state"] == "approved"  # enough signers, not published
    assert (before["published_by"], before["image_sha256"]) == (None, None)
    assert before["valid_approvals"] == 2

    asked = s.ok("POST", f"/firmware/releases/{DRAFT}/publication", "sam", status=201)
    rid, digest = asked["request_id"], asked["digest"]
    assert (asked["action"], asked["subject"]) == ("firmware.publish", f"release:{DRAFT}")
    assert (asked["threshold"], asked["eligible_role"], asked["requested_by"]) == (2, SIGNER.value, "sam")
    assert asked["parameters"] == s.home.releases.publish_terms(DRAFT)
    assert asked["parameters"]["version"] == "1.1.0"

    refused(s.approve(rid, "sam", digest), 422, "policy_violation", "two-person")
    refused(s.call("POST", f"/firmware/releases/{DRAFT}/publication", "pia"), 403, "not_authorised")
    assert s.approve(rid, "rita", digest).status_code == 200
    refused(s.approve(rid, "rita", digest), 409, "conflict")  # one approval per person
    path = f"/firmware/releases/{DRAFT}/publish"
    refused(s.call("POST", path, "sam", {"approval": rid}), 422, "policy_violation", "1 valid approval")
    refused(s.call("POST", path, "pia", {"approval": rid}), 403, "not_authorised")
    assert s.ok("GET", f"/firmware/releases/{DRAFT}", "aud")["state"] == before["state"]
    assert s.approve(rid, "ravi", digest).status_code == 200

    published = s.ok("POST", path, "sam", {"approval": rid})
    assert (published["release_id"], published["state"], published["published_by"]) == (
        DRAFT,
        "published",
        "sam",
    )
    assert published["image_sha256"] == hashlib.sha256(s.home.releases.image(DRAFT)).hexdigest()
    assert published["published_at"] is not None
    shown = s.ok("GET", f"/firmware/releases/{DRAFT}", "aud")
    assert (shown["state"], shown["published_by"], shown["image_sha256"]) == (
        "published",
        "sam",
        published["image_sha256"],
    )
    listed = {r["release_id"]: r["state"] for r in s.ok("GET", "/firmware/releases?product=widget", "aud")}
    assert listed == {s.release: "published", DRAFT: "published"}
    assert s.request_status(rid)["executed_by"] == "sam"

    refused(s.call("POST", path, "sam", {"approval": rid}), 409, "conflict")
    # nobody is asked to approve publishing it again
    refused(
        s.call("POST", f"/firmware/releases/{DRAFT}/publication", "sam"), 409, "conflict", "published already"
    )

    ok = [
        e
        for e in entries(s.home, "release.publish")
        if e.subject == f"release:{DRAFT}" and e.outcome.value == "ok"
    ]
    assert len(ok) == 1
    assert (ok[0].actor, ok[0].details["request_id"]) == ("sam", rid)
    assert sorted(ok[0].details["approvers"]) == ["ravi", "rita"]


# ---------------------------------------------------------------------------------------------------
# pki: revoking a CA


def test_a_ca_is_revoked_by_an_officer_with_a_second_one_approving(domain: Domain) -> None:
    s = domain
    cas = {c["ca_id"]: c for c in s.ok("GET", "/pki/cas", "aud")}
    target = cas["product-gadget"]
    assert (target["status"], target["kind"], target["parent_id"]) == ("active", "product-ca", "root")

    refused(
        s.call("POST", "/pki/cas/root/revocation", "oscar", {"reason": "cACompromise"}),
        422,
        "policy_violation",
        "root cannot be revoked",
    )
    refused(
        s.call("POST", "/pki/cas/product-gadget/revocation", "oscar", {"reason": "stolen"}),
        400,
        "invalid_input",
    )
    refused(
        s.call("POST", "/pki/cas/no-such-ca/revocation", "oscar", {"reason": "cACompromise"}),
        404,
        "not_found",
    )
    refused(
        s.call("POST", "/pki/cas/product-gadget/revocation", "ada", {"reason": "cACompromise"}),
        403,
        "not_authorised",
    )

    asked = s.ok("POST", "/pki/cas/product-gadget/revocation", "oscar", {"reason": "cACompromise"}, 201)
    rid, digest = asked["request_id"], asked["digest"]
    assert (asked["action"], asked["subject"], asked["threshold"]) == ("ca.revoke", "ca:product-gadget", 1)
    assert asked["parameters"] == {
        "ca_id": "product-gadget",
        "fingerprint": target["fingerprint"],
        "reason": "cACompromise",
    }
    refused(s.approve(rid, "oscar", digest), 422, "policy_violation", "two-person")
    assert s.approve(rid, "otto", digest).status_code == 200

    path = "/pki/cas/product-gadget/revoke"
    refused(
        s.call("POST", path, "oscar", {"reason": "keyCompromise", "approval": rid}),
        422,
        "policy_violation",
        "other terms",
    )
    refused(s.call("POST", path, "oscar", {"reason": "stolen", "approval": rid}), 400, "invalid_input")
    refused(
        s.call(
            "POST", "/pki/cas/product-widget/revoke", "oscar", {"reason": "cACompromise", "approval": rid}
        ),
        422,
        "policy_violation",
    )
    refused(s.call("POST", path, "aud", {"reason": "cACompromise", "approval": rid}), 403, "not_authorised")
    assert s.ok("GET", "/pki/cas/product-gadget", "aud")["status"] == "active"
    assert s.request_status(rid)["status"] == "pending"

    revoked = s.ok("POST", path, "oscar", {"reason": "cACompromise", "approval": rid})
    assert (revoked["ca_id"], revoked["status"]) == ("product-gadget", "revoked")
    assert revoked["fingerprint"] == target["fingerprint"]
    after = {c["ca_id"]: c["status"] for c in s.ok("GET", "/pki/cas", "aud")}
    assert after == {**{k: c["status"] for k, c in cas.items()}, "product-gadget": "revoked"}
    assert after["root"] == after["product-widget"] == "active"
    assert s.request_status(rid)["executed_by"] == "oscar"

    refused(s.call("POST", path, "oscar", {"reason": "cACompromise", "approval": rid}), 409, "conflict")

    ok = [e for e in entries(s.home, "ca.revoke") if e.outcome.value == "ok"]
    assert len(ok) == 1
    assert (ok[0].actor, ok[0].subject, ok[0].details["request_id"]) == ("oscar", "ca:product-gadget", rid)
    assert ok[0].details["reason"] == "cACompromise"
    assert ok[0].details["approvers"] == ["otto"]


# ---------------------------------------------------------------------------------------------------
# reads


def test_reads_need_a_token_and_show_the_domain(domain: Domain) -> None:
    s = domain
    products = {p["name"]: p for p in s.ok("GET", "/production/products", "aud")}
    assert set(products) == {"widget", "gadget"}
    assert (products["widget"]["product_ca"], products["widget"]["vendors"]) == ("product-widget", 1)
    assert products["gadget"]["product_ca"] == "product-gadget"

    order = new_order(s, "po-read", 10)
    orders = {o["order_id"]: o for o in s.ok("GET", "/production/orders", "aud")}
    assert orders["po-read"] == order
    assert (order["status"], order["created_by"], order["release_id"]) == ("approved", "pia", s.release)

    cas = {c["ca_id"]: c for c in s.ok("GET", "/pki/cas", "aud")}
    assert {"root", "product-widget", "product-gadget"} <= set(cas)
    assert (cas["root"]["kind"], cas["root"]["parent_id"]) == ("root-ca", None)
    assert cas["product-widget"]["parent_id"] == "root"
    assert "Acme Root CA" in cas["root"]["subject"]
    assert all(len(c["fingerprint"]) == 64 for c in cas.values())

    for path in (
        "/production/products",
        "/production/orders",
        "/production/orders/po-read",
        "/pki/cas",
        "/firmware/releases",
    ):
        refused(s.call("GET", path, None), 401, "unauthenticated")
        bad = s.client.get(path, headers=bearer("ftk_" + "0" * 16 + "_" + "A" * 43))
        refused(bad, 401, "unauthenticated")
    # a factory operator reads nothing at the OEM
    fay = token_for(s.home, "fay", Role.FACTORY_OPERATOR)
    refused(s.client.get("/production/orders", headers=bearer(fay)), 403, "not_authorised")
    refused(s.call("GET", "/production/orders/po-none", "aud"), 404, "not_found")
