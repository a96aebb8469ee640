"""The dashboard's routes under ``/ui`` (left out of the OpenAPI document).

Reading pages needs a session of any role; the rollout buttons need an
operator and a CSRF token that matches the session. Every action goes
through ``operations.py``, so it is audited like an API call, from the
browser's address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from livepatch.server import admins, fleet, operations
from livepatch.server.admins import AdminInfo, Role
from livepatch.server.api.deps import ServiceDep
from livepatch.server.audit import Actor
from livepatch.server.errors import ServerError, Unauthenticated
from livepatch.server.service import Service
from livepatch.server.storage.models import Admin, Report, RolloutEvent
from livepatch.server.ui import charts, pages
from livepatch.server.ui.sessions import COOKIE, LIFETIME, Signer, load_secret
from livepatch.trust.patchmeta import MAX_REASON

router = APIRouter(prefix="/ui", include_in_schema=False)
MAX_FORM = 8 * 1024
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
PatchPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._+~-]{1,255}$")]
MACHINES_PER_PAGE = 100
OVERVIEW_LIMIT = 10_000
"""The fleet overview's charts count at most this many machines (it says so beyond)."""
ACTIONS = ("promote", "halt", "resume", "withdraw", "revoke")
"""The rollout buttons. ``revoke`` takes two posts: the first (with a reason)
answers a confirmation page, the second (``confirm`` = the patch id) revokes."""


class _Signers:
    """One signer per data directory, its secret read once per process."""

    def __init__(self) -> None:
        self._by_dir: dict[str, Signer] = {}

    def of(self, service: Service) -> Signer:
        key = str(service.config.data_dir)
        signer = self._by_dir.get(key)
        if signer is None:
            signer = self._by_dir[key] = Signer(load_secret(service.config.data_dir))
        return signer


_signers = _Signers()


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=HEADERS)


def _redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def _session(request: Request, service: Service) -> tuple[AdminInfo, str] | None:
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        return None
    with service.transaction(readonly=True) as session:
        admin = _signers.of(service).verify(session, cookie, service.clock())
    return (admin, cookie) if admin is not None else None


def _page(
    request: Request,
    service: Service,
    title: str,
    here: str,
    render: Callable[[AdminInfo, str], str],
) -> Response:
    found = _session(request, service)
    if found is None:
        return _redirect("/ui/login")
    admin, cookie = found
    csrf = _signers.of(service).csrf(cookie)
    try:
        body = render(admin, csrf)
    except ServerError as error:
        return _html(
            pages.layout(
                title,
                f'<p class="bad">{escape(error.message)}</p>',
                admin=admin.name,
                csrf=csrf,
                here=here,
            ),
            error.status,
        )
    return _html(pages.layout(title, body, admin=admin.name, csrf=csrf, here=here))


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise Unauthenticated("The form is too large.")
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=16)
    return {name: values[0] for name, values in fields.items() if values}


def _source(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@router.get("/style.css")
def style() -> Response:
    return Response(
        pages.STYLE,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/login")
def login_page() -> Response:
    return _html(pages.layout("Log in", pages.login(), admin=None, csrf=None, here=""))


@router.post("/login")
async def login(request: Request, service: ServiceDep) -> Response:
    key = (await _form(request)).get("key", "").strip()

    def check() -> tuple[AdminInfo, str] | None:
        try:
            with service.transaction(readonly=True) as session:
                admin = admins.authenticate(session, key)
                digest = session.get(Admin, admin.id)
                assert digest is not None
                return admin, digest.key_digest
        except Unauthenticated:
            return None

    found = await asyncio.to_thread(check)
    if found is None:
        page = pages.layout(
            "Log in",
            pages.login("That key is not a live admin API key."),
            admin=None,
            csrf=None,
            here="",
        )
        return _html(page, 401)
    admin, digest = found
    cookie = _signers.of(service).issue(admin.id, digest, service.clock())
    response = _redirect("/ui")
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(LIFETIME.total_seconds()),
        httponly=True,
        samesite="strict",
        # Always: behind a TLS-terminating proxy the service itself may see plain HTTP.
        secure=True,
        path="/ui",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = _redirect("/ui/login")
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("")
def overview(request: Request, service: ServiceDep) -> Response:
    def render(_admin: AdminInfo, _csrf: str) -> str:
        machines = operations.list_machines(service, fleet.Filters(), limit=OVERVIEW_LIMIT)
        return pages.fleet(
            machines["items"],
            operations.list_patches(service),
            service.clock(),
            partial=machines["next"] is not None,
        )

    return _page(request, service, "Fleet", "/ui", render)


@router.get("/rollouts")
def rollouts(request: Request, service: ServiceDep) -> Response:
    def render(admin: AdminInfo, csrf: str) -> str:
        can_steer = admins.allows(admin.role, Role.OPERATOR)
        sections = []
        found = operations.list_patches(service)
        for patch in sorted(found, key=lambda p: (p["withdrawn"], p["created"]), reverse=False):
            per_stage, chart = _rollout_view(service, patch["patch_id"])
            sections.append(pages.rollout(patch, per_stage, chart, can_steer=can_steer, csrf=csrf))
        return "".join(sections) or '<p class="empty">No patch is published yet.</p>'

    return _page(request, service, "Rollouts", "/ui/rollouts", render)


def _rollout_view(service: Service, patch_id: str) -> tuple[dict[str, dict[str, int]], str]:
    """Counts per stage (applied, failed, unhealthy, crashed) and the progress chart."""
    with service.transaction(readonly=True) as session:
        reports = session.scalars(
            select(Report).where(Report.patch_id == patch_id).order_by(Report.received)
        ).all()
        events = session.execute(
            select(RolloutEvent.at, RolloutEvent.action, RolloutEvent.stage)
            .where(RolloutEvent.patch_id == patch_id)
            .order_by(RolloutEvent.at)
        ).all()
    per_stage: dict[str, dict[str, int]] = {}
    applied: list[datetime] = []
    failed: list[datetime] = []
    for row in reports:
        counts = per_stage.setdefault(row.stage, {})
        health = getattr(row, "health", None)
        outcome = "unhealthy" if health == "unhealthy" else row.result
        counts[outcome] = counts.get(outcome, 0) + 1
        (applied if outcome == "applied" else failed).append(row.received)
    markers = [(at, f"{action} {stage}") for at, action, stage in events]
    chart = charts.progress(
        {"applied": charts.cumulative(applied), "failed": charts.cumulative(failed)},
        title=f"{patch_id}: reports over time",
        markers=markers,
    )
    return per_stage, chart


def _refused(admin: AdminInfo, message: str, status: int) -> Response:
    body = f'<p class="bad">{escape(message)}</p><p><a href="/ui/rollouts">Back</a></p>'
    return _html(pages.layout("Refused", body, admin=admin.name, csrf=None, here=""), status)


@router.post("/patches/{patch_id}/{action}")
async def steer(
    patch_id: PatchPath, action: str, request: Request, service: ServiceDep
) -> Response:
    form = await _form(request)
    found = await asyncio.to_thread(_session, request, service)
    if found is None:
        return _redirect("/ui/login")
    admin, cookie = found
    signer = _signers.of(service)
    if not signer.csrf_matches(cookie, form.get("csrf", "")):
        return _refused(admin, "The form is stale or forged: reload the page and try again.", 403)
    if action not in ACTIONS:
        return _refused(admin, "No such action.", 404)
    if not admins.allows(admin.role, Role.OPERATOR):
        return _refused(admin, "Steering rollouts needs the operator role.", 403)
    actor = Actor(admin.name, _source(request))
    reason = form.get("reason", "").strip()
    if action == "revoke":
        if not reason:
            return _refused(admin, "A revocation needs a reason: say why in the reason field.", 422)
        if len(reason) > MAX_REASON or not reason.isprintable():
            return _refused(
                admin, f"Give the reason as one line of at most {MAX_REASON} characters.", 422
            )
        if form.get("confirm") != patch_id:
            csrf = signer.csrf(cookie)
            return await asyncio.to_thread(_confirm_revoke, service, admin, csrf, patch_id, reason)
    run: dict[str, Callable[[], Any]] = {
        "promote": lambda: operations.promote(service, actor, patch_id, None),
        "halt": lambda: operations.halt(
            service, actor, patch_id, reason[:200] or "halted from the dashboard"
        ),
        "resume": lambda: operations.resume(service, actor, patch_id),
        "withdraw": lambda: operations.withdraw(service, actor, patch_id),
        "revoke": lambda: operations.revoke(service, actor, patch_id, reason),
    }
    try:
        await asyncio.to_thread(run[action])
    except ServerError as error:
        return _refused(admin, error.message, error.status)
    return _redirect(f"/ui/rollouts#{quote(patch_id)}")


def _confirm_revoke(
    service: Service, admin: AdminInfo, csrf: str, patch_id: str, reason: str
) -> Response:
    """The confirmation page: a revocation unloads the patch fleet-wide, for good."""
    try:
        patch = operations.show_patch(service, patch_id)
    except ServerError as error:
        return _refused(admin, error.message, error.status)
    if patch["revoked"] is not None:
        return _refused(admin, f"{patch_id} is already revoked.", 409)
    return _html(
        pages.layout(
            f"Revoke {patch_id}?",
            pages.confirm_revoke(patch, reason, csrf),
            admin=admin.name,
            csrf=csrf,
            here="/ui/rollouts",
        )
    )


@router.get("/machines")
def machine_list(
    request: Request,
    service: ServiceDep,
    state: fleet.MachineState | None = None,
    kernel: Annotated[str | None, Query(max_length=255)] = None,
    patch: Annotated[str | None, Query(max_length=255)] = None,
    after: Annotated[str | None, Query(max_length=140)] = None,
) -> Response:
    filters = fleet.Filters(state, kernel or None, patch or None)

    def render(_admin: AdminInfo, _csrf: str) -> str:
        found = operations.list_machines(service, filters, limit=MACHINES_PER_PAGE, after=after)
        shown = {
            "state": state.value if state else "",
            "kernel": kernel or "",
            "patch": patch or "",
        }
        return pages.machines(found["items"], shown, first=after is None, next_page=found["next"])

    return _page(request, service, "Machines", "/ui/machines", render)


@router.get("/machines/{machine_id}")
def machine_page(
    machine_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")],
    request: Request,
    service: ServiceDep,
) -> Response:
    def render(_admin: AdminInfo, _csrf: str) -> str:
        return pages.machine(operations.show_machine(service, machine_id))

    return _page(request, service, f"Machine {machine_id}", "/ui/machines", render)


@router.get("/tokens")
def token_list(request: Request, service: ServiceDep) -> Response:
    return _page(
        request,
        service,
        "Tokens",
        "/ui/tokens",
        lambda _a, _c: pages.tokens(operations.list_tokens(service)),
    )


@router.get("/audit")
def audit_page(
    request: Request,
    service: ServiceDep,
    after: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    def render(_admin: AdminInfo, _csrf: str) -> str:
        found = operations.audit_log(service, limit=100, after=after)
        return pages.audit(found["items"], first=after is None, next_page=found["next"])

    return _page(request, service, "Audit log", "/ui/audit", render)
