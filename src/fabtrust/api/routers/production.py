"""The OEM's production over HTTP under ``/production``: products, orders, the approval an order
above the limit needs and quota raises. The rules, audit entries and refusals are
:class:`fabtrust.production.oem.ProductionService`'s; each route authorizes, acts as the caller
(:meth:`fabtrust.home.Home.acting_as`) and renders.

Acts gated by a k-of-n approval take two calls: ``POST .../approval`` (or ``.../quota/requests``)
asks for the approval of exactly the terms the server computes, and returns the request that the
approvers review and approve under ``/access/approvals``; the act itself then names the approved
request and spends it in its own transaction (a replay is 409, other terms 422).

Sealing packages stays with the CLI (``fabtrust order seal``): it moves station documents that
travel by hand or by the station's own channel.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from fabtrust.access.policy import ApprovalAction, Permission
from fabtrust.access.service import Caller
from fabtrust.api.auth import access_of, guard
from fabtrust.api.bodies import bounded_route
from fabtrust.api.deps import acting_home
from fabtrust.api.schemas import ACCESS_ERRORS, ApprovalRequestDoc, Hex32, SpendApproval
from fabtrust.clock import rfc3339
from fabtrust.production.oem import Order

MAX_BODY_BYTES = 64 * 1024

router = APIRouter(prefix="/production", tags=["production"], route_class=bounded_route(MAX_BODY_BYTES))

OrderPath = Annotated[str, Path(max_length=41, description="An order id.")]
_IN = ConfigDict(extra="forbid")


class ProductDoc(BaseModel):
    name: str
    product_ca: str
    description: str
    vendors: int = Field(description="Silicon vendors whose chips the product accepts.")


class OrderDoc(BaseModel):
    order_id: str
    product: str
    release_id: str
    release_version: str
    image_sha256: str
    stations: list[str]
    quota: int
    not_before: str
    not_after: str
    status: str = Field(description="approved, or awaiting-approval (above the approval limit).")
    created_by: str
    approved_by: str | None = Field(description="The approvers of an order above the limit.")


class CreateOrder(BaseModel):
    model_config = _IN
    order_id: str = Field(max_length=41)
    product: str = Field(max_length=41)
    release_id: str = Field(max_length=96)
    stations: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=64)
    quota: StrictInt = Field(ge=1, le=10_000_000)
    not_before: AwareDatetime
    not_after: AwareDatetime


class QuotaRaise(BaseModel):
    model_config = _IN
    quota: StrictInt = Field(ge=1, le=10_000_000, description="The order's new quota, all stations together.")


class QuotaRaiseApproved(QuotaRaise):
    approval: Hex32 = Field(description="The approved quota.raise request to spend.")


def _order_doc(order: Order) -> OrderDoc:
    t = order.terms
    return OrderDoc(
        order_id=t.order_id,
        product=t.product,
        release_id=t.release_id,
        release_version=t.release_version,
        image_sha256=t.image_sha256,
        stations=list(t.stations),
        quota=t.quota,
        not_before=rfc3339(t.not_before),
        not_after=rfc3339(t.not_after),
        status=order.status,
        created_by=order.created_by,
        approved_by=order.approved_by,
    )


@router.get(
    "/products",
    dependencies=[guard(Permission.PRODUCTION_READ)],
    response_model=list[ProductDoc],
    responses=ACCESS_ERRORS,
)
def products(request: Request) -> list[ProductDoc]:
    return [ProductDoc.model_validate(p) for p in acting_home(request).production.products()]


@router.get(
    "/orders",
    dependencies=[guard(Permission.PRODUCTION_READ)],
    response_model=list[OrderDoc],
    responses=ACCESS_ERRORS,
)
def orders(request: Request) -> list[OrderDoc]:
    return [_order_doc(o) for o in acting_home(request).production.orders()]


@router.get(
    "/orders/{order_id}",
    dependencies=[guard(Permission.PRODUCTION_READ)],
    response_model=OrderDoc,
    responses=ACCESS_ERRORS,
)
def order(request: Request, order_id: OrderPath) -> OrderDoc:
    return _order_doc(acting_home(request).production.order(order_id))


@router.post("/orders", status_code=201, response_model=OrderDoc, responses=ACCESS_ERRORS)
def create_order(
    request: Request,
    body: CreateOrder,
    caller: Annotated[Caller, guard(Permission.PRODUCTION_ORDER_CREATE)],
) -> OrderDoc:
    """An order for a published release; above the approval limit it awaits an approval."""
    made = acting_home(request, caller).production.create_order(
        body.order_id,
        product=body.product,
        release_id=body.release_id,
        stations=body.stations,
        quota=body.quota,
        not_before=body.not_before,
        not_after=body.not_after,
    )
    return _order_doc(made)


@router.post(
    "/orders/{order_id}/approval", status_code=201, response_model=ApprovalRequestDoc, responses=ACCESS_ERRORS
)
def ask_order_approval(
    request: Request,
    order_id: OrderPath,
    caller: Annotated[Caller, guard(Permission.PRODUCTION_ORDER_APPROVE)],
) -> ApprovalRequestDoc:
    """Ask for the ``order.approve`` approval of this order's terms (k planners besides you)."""
    production = acting_home(request, caller).production
    terms = production.approval_terms(production.order(order_id))
    asked = access_of(request).request(caller, ApprovalAction.ORDER_APPROVE, f"order:{order_id}", terms)
    return ApprovalRequestDoc.model_validate(asked.to_doc())


@router.post("/orders/{order_id}/approve", response_model=OrderDoc, responses=ACCESS_ERRORS)
def approve_order(
    request: Request,
    order_id: OrderPath,
    body: SpendApproval,
    caller: Annotated[Caller, guard(Permission.PRODUCTION_ORDER_APPROVE)],
) -> OrderDoc:
    """Approve the order by spending its approved ``order.approve`` request, once."""
    ticket = access_of(request).ticket(caller, body.approval)
    return _order_doc(acting_home(request, caller).production.approve_order(order_id, ticket))


@router.post(
    "/orders/{order_id}/quota/requests",
    status_code=201,
    response_model=ApprovalRequestDoc,
    responses=ACCESS_ERRORS,
)
def ask_quota_raise(
    request: Request,
    order_id: OrderPath,
    body: QuotaRaise,
    caller: Annotated[Caller, guard(Permission.PRODUCTION_QUOTA_RAISE)],
) -> ApprovalRequestDoc:
    """Ask for the ``quota.raise`` approval of raising this order's quota to ``quota``."""
    production = acting_home(request, caller).production
    terms = production.approval_terms(production.order(order_id), body.quota)
    asked = access_of(request).request(caller, ApprovalAction.QUOTA_RAISE, f"order:{order_id}", terms)
    return ApprovalRequestDoc.model_validate(asked.to_doc())


@router.post("/orders/{order_id}/quota", response_model=OrderDoc, responses=ACCESS_ERRORS)
def raise_quota(
    request: Request,
    order_id: OrderPath,
    body: QuotaRaiseApproved,
    caller: Annotated[Caller, guard(Permission.PRODUCTION_QUOTA_RAISE)],
) -> OrderDoc:
    """Raise the quota by spending the approved ``quota.raise`` request for this raise, once."""
    ticket = access_of(request).ticket(caller, body.approval)
    return _order_doc(acting_home(request, caller).production.raise_quota(order_id, body.quota, ticket))
