"""``fabtrust demo``: a whole production run on embedded defaults, checked by the demo itself.

Two data homes under the demo directory, each with its own SQLite store, soft key store and audit
log: ``oem`` (root ceremony with 5 custodians and threshold 3, product CA, a firmware release
approved by 2 of its 3 release signers and published as a signed, encrypted MCUboot image, orders,
packages, reconciliation) and ``line1`` (a factory station: its keys, its order-bound issuing CA,
the provisioning of every device). Devices are the reference secure elements of a simulated
silicon vendor; each boots the release once it is programmed and reports the measured boot in its
signed install receipt. A few counterfeit, forged, replayed and cloned chips are mixed in and must
be refused, and one device beyond the quota must be refused too. At the end the demo checks its
own result — every device chain verifies to the OEM root with cryptography's X.509 verifier, the
quota held, every device booted the release, the OEM registered exactly the good devices, both
audit logs recompute to their signed checkpoints — and prints a summary. Any failed check is an
error (exit 2).
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from cryptography.x509.verification import PolicyBuilder, Store
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from fabtrust.access import ApprovalAction, ApprovalTicket, Caller, Role
from fabtrust.cli.context import console, options
from fabtrust.crypto.canonical import parse_canonical
from fabtrust.device.agent import DeviceAgent, ReplayingAgent
from fabtrust.device.element import SecureElement
from fabtrust.device.vendor import SiliconVendor
from fabtrust.errors import Conflict, FabtrustError, VerificationFailed
from fabtrust.firmware.image import ImageVersion
from fabtrust.home import Home
from fabtrust.production.station import Provisioned
from fabtrust.tlog.export import verify_export, write_export

ORDER = "po-0001"
PRODUCT = "widget"
DEVICE_DOMAIN = "widget.devices.acme.example"
MARKER = "fabtrust-demo.json"
CUSTODIANS = 5
THRESHOLD = 3
RELEASE_SIGNERS = ("alice", "bob", "carol")
RELEASE_THRESHOLD = 2
ADMIN, OFFICER = "ada", "oscar"
PLANNERS = ("pia", "pete")
FIRMWARE_BYTES = 32 * 1024  # small: every simulated device decrypts it when it boots


def demo_team(oem: Home) -> dict[str, Caller]:
    """The OEM's people: the first administrator and security officer (bootstrap), then the
    release signers and production planners, each granted by a role.grant approval (the
    administrator asks, the security officer approves) and signed in with a token."""
    access = oem.access
    admin, officer = access.bootstrap(
        ADMIN, OFFICER, valid_for=timedelta(days=365), token_ttl=timedelta(days=1)
    )
    people = {ADMIN: access.authenticate(admin.token), OFFICER: access.authenticate(officer.token)}
    ada, oscar = people[ADMIN], people[OFFICER]
    now = oem.clock()
    for names, role in ((RELEASE_SIGNERS, Role.RELEASE_SIGNER), (PLANNERS, Role.PRODUCTION_PLANNER)):
        for name in names:
            access.create_principal(ada, name, name.title())
            request = access.request_grant(ada, name, role, now, now + timedelta(days=90))
            access.approve(oscar, request.request_id, request.digest)
            access.apply_grant(ada, request.request_id)
            token = access.issue_token(oscar, name, [role], label="demo", ttl=timedelta(days=1))
            people[name] = access.authenticate(token.token)
    return people


def approved_by(
    oem: Home,
    people: dict[str, Caller],
    action: ApprovalAction,
    subject: str,
    terms: dict[str, Any],
    names: tuple[str, ...],
) -> ApprovalTicket:
    """The first of ``names`` asks for ``action``; as many of the others as the policy needs
    approve the exact statement (by its digest); the ticket lets the requester act."""
    access = oem.access
    requester, *approvers = (people[n] for n in names)
    request = access.request(requester, action, subject, terms)
    for approver in approvers[: request.threshold]:
        access.approve(approver, request.request_id, request.digest)
    return access.ticket(requester, request.request_id)


class DemoFailed(VerificationFailed):
    """The demo's self-check found something wrong."""


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        ctx: typer.Context,
        fresh: bool = typer.Option(False, "--fresh", help="Delete the demo directory first."),
        devices: int = typer.Option(1000, "--devices", min=1, max=100_000, help="Devices to provision."),
        batch: int = typer.Option(50, "--batch", min=1, max=1000, help="Devices per provisioning batch."),
        summary_json: Path | None = typer.Option(None, "--json", help="Also write the summary as JSON."),
    ) -> None:
        """Play a production run (OEM and one factory station) and check its own result."""
        root: Path = options(ctx).home
        if fresh and root.exists():
            if any(root.iterdir()) and not (root / MARKER).exists():
                raise Conflict(f"{root} is not a fabtrust demo directory; refusing to delete it")
            shutil.rmtree(root)
        if root.exists() and any(root.iterdir()):
            raise Conflict(f"{root} holds an earlier demo; use --fresh to replace it")
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (root / MARKER).write_text(json.dumps({"format": "fabtrust.demo/v1"}) + "\n")
        summary = _Demo(root, devices, batch).run()
        if summary_json is not None:
            summary_json.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

    return None


class _Demo:
    def __init__(self, root: Path, devices: int, batch: int) -> None:
        self.root, self.devices, self.batch = root, devices, batch
        # Each home's key-store passphrase lives in this process only: the homes can be inspected
        # afterwards with the read-only commands (log checkpoint, prove, export), which need none.
        self._secrets = {name: secrets.token_urlsafe(24) for name in ("oem", "line1")}
        self.refusals: Counter[str] = Counter()
        self.people: dict[str, Caller] = {}

    def home(self, name: str, actor: str, *, create: bool) -> Home:
        passphrase = self._secrets[name]
        if create:
            return Home.init(self.root / name, passphrase=lambda: passphrase, pin=lambda: "", actor=actor)
        return Home.open(self.root / name, passphrase=lambda: passphrase, pin=lambda: "", actor=actor)

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        console.rule("[bold]fabtrust demo: a production run")
        with (
            self.home("oem", "oem:admin", create=True) as oem,
            self.home("line1", "line1:operator", create=True) as line1,
        ):
            vendor = self._oem_setup(oem)
            self._station_setup(oem, line1)
            elapsed, provisioned = self._provision(line1, vendor)
            export = line1.station.export(since_size=0)
            report = oem.reconciler.reconcile(export)
            summary = self._check(oem, line1, provisioned, report.to_doc(), elapsed, export)
        summary["demo_seconds"] = round(time.perf_counter() - t0, 2)
        console.print(f"demo finished in {summary['demo_seconds']:.1f} s. Look around, without any secret:")
        console.print(f"  fabtrust --home {self.root / 'oem'} log checkpoint")
        console.print(f"  fabtrust --home {self.root / 'line1'} log entries --start 0 --end 5")
        return summary

    # -- the story ---------------------------------------------------------------------------------

    def _oem_setup(self, oem: Home) -> SiliconVendor:
        console.print("[bold]1. OEM: root key ceremony[/]")
        custodians = [(f"custodian-{i}", secrets.token_urlsafe(16)) for i in range(1, CUSTODIANS + 1)]
        ceremony = oem.pki.init_root(
            attributes={"commonName": "Acme Root CA", "organizationName": "Acme"},
            custodians=custodians,
            threshold=THRESHOLD,
        )
        custody = oem.path / "custody"
        custody.mkdir(mode=0o700)
        for name, share in ceremony.shares:
            (custody / f"{name}.share").write_bytes(share)
        (custody / "root-backup.json").write_bytes(ceremony.backup)
        (custody / "ceremony-transcript.json").write_bytes(ceremony.transcript)
        console.print(
            f"   root CA {ceremony.root.certificate.subject.rfc4514_string()}; backup split {THRESHOLD}-of-"
            f"{CUSTODIANS}, shares sealed per custodian in {custody}"
        )
        self.people = demo_team(oem)
        console.print(
            f"   people: {ADMIN} (administrator) and {OFFICER} (security officer) bootstrapped; "
            f"{', '.join(RELEASE_SIGNERS)} (release signers) and {', '.join(PLANNERS)} (planners) granted "
            "through approvals, each with a token"
        )
        console.print("[bold]2. OEM: product line, accepted silicon vendor, firmware release[/]")
        vendor = SiliconVendor("Trusted Silicon", now=oem.clock() - timedelta(days=1))
        oem.production.create_product(
            PRODUCT,
            description="Acme Widget",
            device_domain=DEVICE_DOMAIN,
            vendor_roots=[vendor.root],
            organization="Acme",
        )
        console.print(
            f"   product {PRODUCT} (devices under {DEVICE_DOMAIN}), accepting "
            f"{vendor.root.subject.rfc4514_string()}"
        )
        releases = oem.releases
        for name in RELEASE_SIGNERS:
            releases.add_signer(name)
        releases.set_policy(PRODUCT, RELEASE_THRESHOLD)
        firmware = b"FABTRUST-DEMO-FIRMWARE 1.0.0\n" + secrets.token_bytes(FIRMWARE_BYTES)
        release = releases.create(PRODUCT, "1.0.0", firmware, 1, "first production release")
        for name in RELEASE_SIGNERS[:RELEASE_THRESHOLD]:
            release = releases.approve(release.release_id, name)
        release = releases.publish(
            release.release_id,
            approved_by(
                oem,
                self.people,
                ApprovalAction.FIRMWARE_PUBLISH,
                f"release:{release.release_id}",
                releases.publish_terms(release.release_id),
                RELEASE_SIGNERS,
            ),
        )
        approvers = ", ".join(a.signer or a.key_id for a in release.approvals if a.status == "valid")
        console.print(
            f"   release {release.release_id}: SBOM (CycloneDX 1.6), approved by {approvers} "
            f"({release.valid_approvals} of {len(RELEASE_SIGNERS)} release signers, "
            f"{release.threshold} needed)"
        )
        console.print(
            f"   published: {release.image_size:,}-byte MCUboot image, security counter "
            f"{release.statement.security_counter}, signed by the OEM firmware key, encrypted to the "
            f"{PRODUCT} class key"
        )
        return vendor

    def _station_setup(self, oem: Home, line1: Home) -> None:
        console.print("[bold]3. Station line1: keys made in its own key store, certified by the OEM[/]")
        enrollment = line1.station.enroll("line1", organization="Acme")
        line1.station.install_certificate(oem.production.certify_station(enrollment, organization="Acme"))
        console.print("[bold]4. OEM: order for the release, and a package sealed to line1 only[/]")
        now = oem.clock()
        order = oem.production.create_order(
            ORDER,
            product=PRODUCT,
            release_id=f"{PRODUCT}-1.0.0",
            stations=["line1"],
            quota=self.devices,
            not_before=now,
            not_after=now + timedelta(days=30),
        )
        if order.status == "awaiting-approval":
            terms = oem.production.approval_terms(order)
            ticket = approved_by(
                oem, self.people, ApprovalAction.ORDER_APPROVE, f"order:{ORDER}", terms, PLANNERS
            )
            oem.production.approve_order(ORDER, ticket)
            console.print(
                f"   order above the approval limit: approved by {PLANNERS[1]}, asked by {PLANNERS[0]}"
            )
        package = oem.production.seal_package(ORDER, line1.station.issuing_request(ORDER))
        status = line1.station.load(package)
        console.print(
            f"   order {ORDER}: quota {status['quota']}, window until {status['not_after']}; "
            f"package {len(package):,} bytes (the encrypted image and its class key inside), HPKE-sealed "
            f"to line1, issuing CA {status['issuing_ca']}"
        )

    def _provision(self, line1: Home, vendor: SiliconVendor) -> tuple[float, list[Provisioned]]:
        console.print(
            f"[bold]5. line1: provisioning {self.devices:,} devices (and some bad chips); each boots the "
            "release and signs what it measured[/]"
        )
        station = line1.station
        image = station.image(ORDER)  # one image for every device of the order
        other = SiliconVendor("Counterfeit Fab", now=line1.clock() - timedelta(days=1))
        provisioned: list[Provisioned] = []
        first: SecureElement | None = None
        bad: list[tuple[str, Callable[[bytes], bytes]]] = []
        started = time.perf_counter()
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("provisioning", total=self.devices)
            while len(provisioned) < self.devices:
                chips = [vendor.make_chip() for _ in range(min(self.batch, self.devices - len(provisioned)))]
                answers, elements = [], {}
                for chip in chips:
                    challenge = station.challenge(ORDER)
                    answers.append((challenge, DeviceAgent(chip).answer(challenge)))
                    elements[chip.uid] = chip
                if first is None:
                    first = chips[0]
                    recorded = DeviceAgent(vendor.make_chip()).answer(station.challenge(ORDER))
                    bad = [
                        ("counterfeit chip (unknown vendor)", DeviceAgent(other.make_chip()).answer),
                        ("counterfeit chip (unknown vendor)", DeviceAgent(other.make_chip()).answer),
                        ("forged chip UID", DeviceAgent(vendor.forge_uid(vendor.make_chip())).answer),
                        ("replayed response", ReplayingAgent(recorded).answer),
                    ]
                elif bad:
                    # the bad chips arrive in the second batch, and a clone of a provisioned chip
                    for _, answer in bad:
                        challenge = station.challenge(ORDER)
                        answers.append((challenge, answer(challenge)))
                    challenge = station.challenge(ORDER)
                    answers.append((challenge, DeviceAgent(vendor.clone(first)).answer(challenge)))
                    bad = []
                results = station.provision(ORDER, answers)
                receipts = []
                for result in results:
                    if isinstance(result, Provisioned):
                        agent = DeviceAgent(elements[result.chip_uid])
                        receipts.append(agent.install(result.provisioning, image))
                        provisioned.append(result)
                    else:
                        self.refusals[_reason(result)] += 1
                for outcome in station.complete(receipts):
                    if isinstance(outcome, FabtrustError):
                        raise DemoFailed(f"a device's install receipt was refused: {outcome.message}")
                progress.update(task, completed=len(provisioned))
        elapsed = time.perf_counter() - started
        # one more genuine device: the quota is used up
        challenge = station.challenge(ORDER)
        extra = station.provision(ORDER, [(challenge, DeviceAgent(vendor.make_chip()).answer(challenge))])
        if isinstance(extra[0], Provisioned):
            raise DemoFailed("a device beyond the quota was provisioned")
        self.refusals[_reason(extra[0])] += 1
        return elapsed, provisioned

    # -- the self-check ----------------------------------------------------------------------------

    def _check(
        self,
        oem: Home,
        line1: Home,
        provisioned: list[Provisioned],
        report: dict[str, Any],
        elapsed: float,
        export: bytes,
    ) -> dict[str, Any]:
        console.print("[bold]6. OEM: reconciliation of line1's records, checkpoint and proofs[/]")
        root = oem.pki.ca("root").certificate
        verifier = PolicyBuilder().store(Store([root])).build_client_verifier()
        issuing = [c.certificate for c in line1.pki.chain(line1.station.status()[0]["issuing_ca"])[:-1]]
        for device in provisioned:
            verifier.verify(device.certificate, issuing)
        status = line1.station.order_status(ORDER)
        registry = oem.reconciler.devices(ORDER)
        terms = oem.production.order(ORDER).terms
        release = {
            "firmware_digest": terms.firmware_digest,
            "firmware_version": str(ImageVersion.parse(terms.release_version)),  # as devices write it
            "security_counter": terms.security_counter,
        }
        measured = [r["measured"] for r in parse_canonical(export)["records"]]
        checks = {
            "every device chain verifies to the OEM root": len(provisioned) == self.devices,
            "quota held at the station": status["used"] == status["quota"] == self.devices,
            "every device programmed (receipt verified)": status["programmed"] == self.devices,
            f"every device booted release {terms.release_id} (measured digest, version, counter)": len(
                measured
            )
            == self.devices
            and all(m == release for m in measured),
            "OEM registered exactly the good devices": report["registered"] == self.devices == len(registry),
            "no alert at reconciliation": report["alerts"] == [],
            "no duplicate chip, serial or key": len({d["chip_uid"] for d in registry})
            == len({d["key_id"] for d in registry})
            == self.devices,
        }
        logs: dict[str, dict[str, Any]] = {}
        for name, home in (("oem", oem), ("line1", line1)):
            latest = home.log.latest_checkpoint()
            stream = io.BytesIO()
            write_export(stream, home.config.origin, latest.size, home.log.iter_entries(latest.size))
            verify_export(io.BytesIO(stream.getvalue()), latest.note, home.log_verifier())
            logs[name] = {
                "size": latest.size,
                "root": latest.root.hex(),
                "checkpoints": len(home.log.checkpoint_sizes()),
            }
            checks[f"{name} audit log recomputes to its signed checkpoint ({latest.size} entries)"] = True
        results = Table("check", "result", title="self-check")
        for check, ok in checks.items():
            results.add_row(check, "[green]ok[/]" if ok else "[red]FAILED[/]")
        console.print(results)
        table = Table("", "", title=f"summary: order {ORDER}")
        rate = len(provisioned) / elapsed
        table.add_row(
            "devices provisioned",
            f"{len(provisioned):,} in {elapsed:.2f} s ({rate:,.0f}/s end to end, simulated devices included)",
        )
        table.add_row("quota", f"{status['used']:,} used of {status['quota']:,}; {status['remaining']} left")
        table.add_row(
            "firmware booted",
            f"{terms.release_id}, security counter {terms.security_counter}, "
            f"digest {terms.firmware_digest[:16]}…",
        )
        for reason, count in sorted(self.refusals.items()):
            table.add_row(f"refused: {reason}", str(count))
        table.add_row("registered at the OEM", f"{report['registered']:,} manufactured")
        for name, log in logs.items():
            table.add_row(
                f"{name} audit log",
                f"{log['size']:,} entries, {log['checkpoints']:,} checkpoints, root {log['root'][:16]}…",
            )
        console.print(table)
        if not all(checks.values()):
            failed = [c for c, ok in checks.items() if not ok]
            raise DemoFailed(f"demo self-check failed: {failed[0]}")
        return {
            "format": "fabtrust.demo-summary/v1",
            "devices": len(provisioned),
            "devices_per_s": round(rate, 1),
            "refusals": dict(self.refusals),
            "quota": {"quota": status["quota"], "used": status["used"]},
            "registered": report["registered"],
            "release": {"release_id": terms.release_id, **release},
            "logs": logs,
            "checks": checks,
        }


def _reason(error: object) -> str:
    message = getattr(error, "message", str(error))
    if "accepted silicon vendor" in message:
        return "counterfeit chip (unknown vendor)"
    if "provisioned already" in message:
        return "cloned chip (seen before)"
    if "quota" in message:
        return "quota exhausted"
    if "nonce" in message or "challenge" in message or "replay" in message:
        return "replayed or foreign challenge response"
    if "signature" in message:
        return "chip signature does not verify (forged UID)"
    return message
