"""The factory station's line API under ``/station``: line equipment (programmer and test software)
drives provisioning over HTTP. The work is in :class:`fabtrust.production.station.Station`; this
module decodes, calls and renders.

One batch of devices::

    POST /station/challenge          one per device: a fresh, single-use genuineness challenge
    (the device agent answers it)
    POST /station/provision          the answers: per device a provisioning document or a refusal
    GET  /station/orders/<id>/image  the order's firmware image, programmed beside each document
    (the device agent installs both and signs a receipt)
    POST /station/receipts           the receipts: per receipt recorded or refused
    GET  /station/status, /station/orders/<id>

Served only by ``fabtrust serve --station`` (``create_app(home, station=True)``); elsewhere these
routes do not exist (404).

- **Authenticated:** line equipment holds a factory operator's API token (``station.provision``
  for challenges, provisioning, the image and receipts; ``station.read`` for status); see
  :mod:`fabtrust.api.auth`. Anyone else is refused (401/403) and the refusal logged.
- Documents are signed or canonical bytes: they travel as standard, padded base64 in JSON, decoded
  strictly (:func:`fabtrust.crypto.encoding.unb64`). A malformed request (bad JSON, a missing or
  unknown field, bad base64, no or too many devices) is refused whole, before any challenge is
  spent; a refused device inside a well-formed batch is a ``refused`` result beside the others.
- Request bodies over :data:`MAX_BODY_BYTES` are refused (413) while they are read.
- Threads: the handlers are plain ``def`` (FastAPI runs them in its thread pool) and share the
  app's one ``Station``. That is safe without a lock here: its challenge table has its own lock;
  ``provision`` and ``complete`` each do their counting in one write transaction (SQLite
  ``BEGIN IMMEDIATE``, PostgreSQL ``FOR UPDATE``), so concurrent batches queue in the store;
  PKCS#11 calls are serialised per library by the key store; what else the services cache in
  memory (loaded packages, CA chains, key handles) is filled idempotently.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from fabtrust.access.policy import Permission
from fabtrust.api.auth import requires
from fabtrust.api.bodies import bounded_route
from fabtrust.api.errors import request_id
from fabtrust.api.schemas import (
    GUARDED_ERRORS,
    ChallengeDoc,
    ChallengeRequest,
    ErrorBody,
    OrderStatus,
    ProvisionedDevice,
    ProvisionRequest,
    ProvisionResults,
    ReceiptResults,
    ReceiptsRequest,
    Recorded,
    Refused,
    StationStatus,
)
from fabtrust.crypto.encoding import b64, unb64
from fabtrust.errors import FabtrustError, InvalidInput
from fabtrust.pki.service import check_name
from fabtrust.production.station import Provisioned, Station

log = logging.getLogger("fabtrust.api")

# Devices per provisioning or receipts call. One provisioning call is one write transaction that
# holds the store's write lock (all of SQLite) while it certifies and records every device of the
# batch, so a bounded batch keeps challenges, receipts and other stations' batches from queueing
# behind one huge call; it also bounds the answer (a provisioning document, about 5 KB in base64
# with its certificate chain and sealed secrets, per device). Line equipment sends more devices as
# more calls.
MAX_DEVICES_PER_CALL = 100
# A provisioning answer measures about 3 KB in base64 (challenge and genuineness response with a
# two-certificate vendor chain); 1 MiB leaves room for a full batch with longer vendor chains.
MAX_BODY_BYTES = 1024 * 1024
IMAGE_MEDIA_TYPE = "application/octet-stream"


_ERRORS: dict[int | str, dict[str, Any]] = {
    **GUARDED_ERRORS,
    409: {"model": ErrorBody, "description": "The order's counter moved during the batch; retry."},
    413: {"model": ErrorBody, "description": f"The body is larger than {MAX_BODY_BYTES} bytes."},
    422: {
        "model": ErrorBody,
        "description": "A rule refuses the whole request (the order's window, too many open challenges).",
    },
}


router = APIRouter(prefix="/station", tags=["station"], route_class=bounded_route(MAX_BODY_BYTES))
OrderPath = Annotated[str, Path(max_length=41, description="An order whose package is loaded here.")]


def station_of(request: Request) -> Station:
    """The app's one station; NotFound (404) if the home is not an enrolled station, so that every
    route says so rather than, say, that no package is loaded (cached once certified)."""
    station = request.app.state.station
    assert isinstance(station, Station)
    station.identity()
    return station


def _order(order_id: str) -> str:
    return check_name(order_id, "order id")


def _batch(size: int, what: str) -> None:
    if not 1 <= size <= MAX_DEVICES_PER_CALL:
        raise InvalidInput(f"send 1 to {MAX_DEVICES_PER_CALL} {what} per request (got {size})")


def _refused(exc: FabtrustError) -> Refused:
    return Refused(error=exc.code, message=exc.message)


@router.post(
    "/challenge",
    dependencies=[Depends(requires(Permission.STATION_PROVISION))],
    response_model=ChallengeDoc,
    responses=_ERRORS,
)
def challenge(request: Request, body: ChallengeRequest) -> ChallengeDoc:
    """A fresh genuineness challenge for one device of the order (single use, valid 5 minutes)."""
    document = station_of(request).challenge(_order(body.order_id))
    return ChallengeDoc(challenge=b64(document))


@router.post(
    "/provision",
    dependencies=[Depends(requires(Permission.STATION_PROVISION))],
    response_model=ProvisionResults,
    responses=_ERRORS,
)
def provision(request: Request, body: ProvisionRequest) -> ProvisionResults:
    """Provision 1 to 100 devices of one order, one answer (challenge, response) each.

    The results are in the order of the answers: a provisioning document for the device agent, or
    the reason that device was refused (counterfeit, replayed challenge, clone, quota). A request
    refused whole (unknown order, window closed, malformed) is an error and spends nothing."""
    order_id = _order(body.order_id)
    _batch(len(body.answers), "answers")
    answers = [
        (unb64(a.challenge, f"answers[{i}].challenge"), unb64(a.response, f"answers[{i}].response"))
        for i, a in enumerate(body.answers)
    ]
    outcomes = station_of(request).provision(order_id, answers)
    results: list[ProvisionedDevice | Refused] = [
        ProvisionedDevice(
            chip_uid=o.chip_uid, device_serial=o.device_serial, seq=o.seq, provisioning=b64(o.provisioning)
        )
        if isinstance(o, Provisioned)
        else _refused(o)
        for o in outcomes
    ]
    _log_batch(request, f"provision {order_id}", results)
    return ProvisionResults(results=results)


@router.get(
    "/orders/{order_id}/image",
    dependencies=[Depends(requires(Permission.STATION_PROVISION))],
    response_class=Response,
    responses={**_ERRORS, 200: {"content": {IMAGE_MEDIA_TYPE: {}}, "description": "The image."}},
)
def image(request: Request, order_id: OrderPath) -> Response:
    """The order's firmware image, programmed into each device beside its provisioning document
    (which names the image's SHA-256; the device checks it before writing anything).

    ``Repr-Digest`` carries the SHA-256 too (RFC 9530 section 3)."""
    data = station_of(request).image(_order(order_id))
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return Response(data, media_type=IMAGE_MEDIA_TYPE, headers={"Repr-Digest": f"sha-256=:{digest}:"})


@router.post(
    "/receipts",
    dependencies=[Depends(requires(Permission.STATION_PROVISION))],
    response_model=ReceiptResults,
    responses=_ERRORS,
)
def receipts(request: Request, body: ReceiptsRequest) -> ReceiptResults:
    """Record 1 to 100 device-signed install receipts; each is recorded once (a second time, it
    is refused)."""
    _batch(len(body.receipts), "receipts")
    raw = [unb64(r, f"receipts[{i}]") for i, r in enumerate(body.receipts)]
    results: list[Recorded | Refused] = [
        Recorded(chip_uid=o) if isinstance(o, str) else _refused(o) for o in station_of(request).complete(raw)
    ]
    _log_batch(request, "receipts", results)
    return ReceiptResults(results=results)


@router.get(
    "/status",
    dependencies=[Depends(requires(Permission.STATION_READ))],
    response_model=StationStatus,
    responses=_ERRORS,
)
def status(request: Request) -> StationStatus:
    """Every order loaded here: quota, used, remaining, devices issued and programmed."""
    station = station_of(request)
    return StationStatus(station_id=station.station_id, orders=[OrderStatus(**s) for s in station.status()])


@router.get(
    "/orders/{order_id}",
    dependencies=[Depends(requires(Permission.STATION_READ))],
    response_model=OrderStatus,
    responses=_ERRORS,
)
def order_status(request: Request, order_id: OrderPath) -> OrderStatus:
    """One order's status at this station (404 if no package is loaded for it)."""
    return OrderStatus(**station_of(request).order_status(_order(order_id)))


def _log_batch(request: Request, what: str, results: list[Any]) -> None:
    refused: dict[str, int] = {}
    for r in results:
        if isinstance(r, Refused):
            refused[r.error] = refused.get(r.error, 0) + 1
    log.info(
        "request %s: %s: %d done, refused %s",
        request_id(request),
        what,
        len(results) - sum(refused.values()),
        refused or "none",
    )
