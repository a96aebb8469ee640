"""The dashboard's pages: pure functions from documents to HTML (every value escaped).

The documents are those of ``operations.py``, the same the admin API answers with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from livepatch.server.ui import charts
from livepatch.trust.patchmeta import MAX_REASON

Document = Mapping[str, Any]
STATES = ("apply-failed", "unhealthy", "crashed", "kernel-upgrade-required", "stale")
AGE_BUCKETS = (
    ("under 1 hour", timedelta(hours=1)),
    ("under 1 day", timedelta(days=1)),
    ("under 2 days", timedelta(days=2)),
)
NAV = (
    ("/ui", "Fleet"),
    ("/ui/rollouts", "Rollouts"),
    ("/ui/machines", "Machines"),
    ("/ui/tokens", "Tokens"),
    ("/ui/audit", "Audit log"),
)

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#fff;text-decoration:none}header a.on{text-decoration:underline}
header form{margin-left:auto}main{padding:16px;max-width:1200px}
h1{font-size:20px}h2{font-size:16px;margin-top:24px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px;
text-align:left}th{background:#eceff1}.grid{display:flex;flex-wrap:wrap;gap:24px}
.card{background:#fff;border:1px solid #ddd;padding:8px 12px}.num{font-size:24px}
.bad{color:#c62828}.ok{color:#2e7d32}.halted{background:#ffebee}.empty{color:#777}
button{padding:3px 10px}form.inline{display:inline}.patch{background:#fff;border:1px solid
#ddd;padding:8px 12px;margin-bottom:16px}input,select{padding:3px}
button.danger{background:#c62828;color:#fff}
"""


def layout(title: str, body: str, *, admin: str | None, csrf: str | None, here: str) -> str:
    nav = "".join(
        f'<a href="{href}"{" class=on" if href == here else ""}>{label}</a>' for href, label in NAV
    )
    logout = (
        f'<form method="post" action="/ui/logout">{_csrf_field(csrf)}'
        f"<span>{escape(admin)}</span> <button>Log out</button></form>"
        if admin is not None
        else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f'<title>{escape(title)} · livepatch</title><link rel=stylesheet href="/ui/style.css">'
        f"</head><body><header><strong>livepatch</strong>{nav if admin else ''}{logout}</header>"
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


def _csrf_field(csrf: str | None) -> str:
    return f'<input type=hidden name=csrf value="{escape(csrf)}">' if csrf else ""


def login(error: str | None = None) -> str:
    message = f'<p class="bad" role="alert">{escape(error)}</p>' if error else ""
    return (
        f"{message}<form method=post action=/ui/login>"
        "<label>Admin API key <input type=password name=key autocomplete=off required "
        'size=60 autofocus></label> <button type="submit">Log in</button></form>'
        "<p>Create the first admin on the server: <code>livepatch-admin admins create NAME "
        "--role admin</code>.</p>"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def _when(value: str | None) -> str:
    return escape(value[:19].replace("T", " ")) if value else "-"


def machine_link(machine_id: str) -> str:
    return f'<a href="/ui/machines/{quote(machine_id)}">{escape(machine_id)}</a>'


def check_in_ages(machines: Sequence[Document], now: datetime) -> list[tuple[str, int]]:
    counts = dict.fromkeys([label for label, _ in AGE_BUCKETS] + ["older"], 0)
    for machine in machines:
        age = now - datetime.fromisoformat(machine["last_check_in"])
        label = next((lbl for lbl, limit in AGE_BUCKETS if age < limit), "older")
        counts[label] += 1
    return list(counts.items())


def fleet(
    machines: Sequence[Document],
    patches: Sequence[Document],
    now: datetime,
    *,
    partial: bool = False,
) -> str:
    """The overview; `partial` when `machines` are only the first ones of a larger fleet."""
    states = Counter(s for m in machines for s in m["states"])
    healthy = sum(1 for m in machines if not m["states"])
    live = [p for p in patches if not p["withdrawn"]]
    halted = sum(1 for p in live if p["rollout"]["halted"])
    cards = [
        ("Machines", len(machines), ""),
        ("Fine", healthy, "ok"),
        ("Need attention", len(machines) - healthy, "bad" if len(machines) - healthy else ""),
        ("Live patches", len(live), ""),
        ("Halted rollouts", halted, "bad" if halted else ""),
    ]
    summary = "".join(
        f'<div class="card"><div class="num {cls}">{n}</div>{escape(label)}</div>'
        for label, n, cls in cards
    )
    by_kernel = Counter(m["kernel"] for m in machines).most_common(12)
    by_patch = Counter(m["patch_loaded"] or "none" for m in machines).most_common(12)
    by_state = [(s, states.get(s, 0)) for s in STATES] + [("fine", healthy)]
    charts_html = "".join(
        f"<div><h2>{escape(title)}</h2>{chart}</div>"
        for title, chart in (
            ("Machines by kernel", charts.bars(by_kernel, title="Machines by kernel")),
            ("Machines by patch loaded", charts.bars(by_patch, title="Machines by patch")),
            ("Machines by state", charts.bars(by_state, title="Machines by state")),
            (
                "Last check-in",
                charts.bars(check_in_ages(machines, now), title="Last check-in"),
            ),
        )
    )
    state_links = " · ".join(
        f'<a href="/ui/machines?state={s}">{s} ({states.get(s, 0)})</a>' for s in STATES
    )
    note = (
        f'<p class="bad">These figures count only the first {len(machines):,} machines '
        "(in machine-id order): filter the machine list for the rest.</p>"
        if partial
        else ""
    )
    return (
        f'{note}<div class="grid">{summary}</div><p>Filter: {state_links}</p>'
        f'<div class="grid">{charts_html}</div>'
    )


def rollout(
    patch: Document,
    per_stage: Mapping[str, Mapping[str, int]],
    chart: str,
    *,
    can_steer: bool,
    csrf: str,
) -> str:
    rollout_state = patch["rollout"]
    patch_id = patch["patch_id"]
    revoked = patch.get("revoked")
    if patch["withdrawn"]:
        status = "withdrawn"
    elif revoked:
        status = "REVOKED"
    else:
        status = "HALTED" if rollout_state["halted"] else "rolling out"
    rows = [
        (
            escape(stage),
            str(counts.get("applied", 0)),
            str(counts.get("failed", 0)),
            str(counts.get("unhealthy", 0)),
            str(counts.get("crashed", 0)),
        )
        for stage, counts in per_stage.items()
    ]
    table = (
        _table(("Stage", "Applied", "Failed", "Unhealthy", "Crashed"), rows)
        if rows
        else '<p class="empty">No reports yet.</p>'
    )
    if revoked:
        reason = (
            f'<p class="bad revoked">Revoked at {_when(revoked["at"])}: '
            f"<span class=reason>{escape(revoked['reason'])}</span></p>"
        )
    elif rollout_state["halted"] and rollout_state["halt_reason"]:
        reason = f'<p class="bad">Halt reason: {escape(rollout_state["halt_reason"])}</p>'
    else:
        reason = ""
    actions = ""
    # A revoked patch is final: no resume, and no withdraw (machines must keep
    # seeing the revocation to leave it).
    if can_steer and not patch["withdrawn"] and not revoked:
        buttons = []
        if rollout_state["halted"]:
            buttons.append(_action(patch_id, "resume", "Resume", csrf))
        else:
            if rollout_state["stage"] != "all":
                buttons.append(_action(patch_id, "promote", "Promote", csrf))
            buttons.append(_action(patch_id, "halt", "Halt", csrf, field=_HALT_REASON))
        buttons.append(_action(patch_id, "withdraw", "Withdraw", csrf))
        buttons.append(_action(patch_id, "revoke", "Revoke…", csrf, field=_REVOKE_REASON))
        actions = '<p class="actions">' + " ".join(buttons) + "</p>"
    cls = "patch halted" if rollout_state["halted"] else "patch"
    return (
        f'<section class="{cls}" id="{escape(patch_id)}" data-patch="{escape(patch_id)}">'
        f"<h2>{escape(patch_id)} · <span class=status>{status}</span></h2>"
        f"<p>Stage <strong class=stage>{escape(rollout_state['stage'])}</strong> at "
        f"{rollout_state['percentage']:g}% since {_when(rollout_state['since'])}; kernels "
        f"{escape(', '.join(patch['kernels']))}; {escape(', '.join(patch['cves']))} "
        f"({escape(patch['severity'])})</p>{reason}{table}{chart}{actions}</section>"
    )


_HALT_REASON = (
    '<input name=reason placeholder="reason" maxlength=200 size=24 '
    'value="halted from the dashboard">'
)
_REVOKE_REASON = (
    f'<input name=reason placeholder="why (required)" maxlength={MAX_REASON} size=24 required>'
)


def _action(patch_id: str, action: str, label: str, csrf: str, *, field: str = "") -> str:
    return (
        f'<form class=inline method=post action="/ui/patches/{quote(patch_id)}/{action}">'
        f'{_csrf_field(csrf)}{field}<button type=submit name=do value="{action}">{label}'
        "</button></form>"
    )


def confirm_revoke(patch: Document, reason: str, csrf: str) -> str:
    """The second step of a revocation: what it does, the reason, and the button that does it."""
    patch_id = patch["patch_id"]
    applied = sum(row["applied"] for row in patch.get("reports", ()))
    return (
        f'<section class="patch halted" data-patch="{escape(patch_id)}">'
        f"<p>Revoking <strong>{escape(patch_id)}</strong> signs a revocation into the "
        "metadata: every machine that has it loaded unloads it (back to the previous "
        f"patch, or none), on kernels {escape(', '.join(patch['kernels']))}. "
        f"Applied reports so far: {applied}. "
        "It cannot be undone: a fixed patch must be published instead.</p>"
        f"<p>Reason, shown to every machine's administrator: "
        f"<strong class=reason>{escape(reason)}</strong></p>"
        f'<form method=post action="/ui/patches/{quote(patch_id)}/revoke">{_csrf_field(csrf)}'
        f'<input type=hidden name=reason value="{escape(reason)}">'
        f'<input type=hidden name=confirm value="{escape(patch_id)}">'
        f'<button type=submit name=do value=confirm-revoke class="danger">Revoke '
        f"{escape(patch_id)} on every machine</button> "
        f'<a href="/ui/rollouts#{quote(patch_id)}">Cancel</a></form></section>'
    )


def machines(
    rows: Sequence[Document],
    filters: Mapping[str, str],
    *,
    first: bool = True,
    next_page: str | None = None,
) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if filters.get("state") == s else ""}>{s}</option>'
        for s in ("", *STATES)
    )
    form = (
        "<form method=get action=/ui/machines>"
        f"<label>State <select name=state>{options}</select></label> "
        f'<label>Kernel <input name=kernel value="{escape(filters.get("kernel", ""))}"></label> '
        f'<label>Patch <input name=patch value="{escape(filters.get("patch", ""))}"></label> '
        "<button>Filter</button></form>"
    )
    body = _table(
        ("Machine", "Hostname", "Kernel", "Arch", "Patch", "Last outcome", "Check-in", "State"),
        (
            (
                machine_link(m["machine_id"]),
                _text(m["hostname"]),
                _text(m["kernel"]),
                _text(m["architecture"]),
                _text(m["patch_loaded"]),
                _text((m["last_outcome"] or {}).get("result")),
                _when(m["last_check_in"]),
                escape(", ".join(m["states"])) or '<span class="ok">fine</span>',
            )
            for m in rows
        ),
    )
    links = _page_links("/ui/machines", filters, first=first, next_page=next_page)
    count = f"{len(rows)} machine{'' if len(rows) == 1 else 's'} on this page"
    return f"{form}<p>{count}.</p>{links}{body}{links}"


def _page_links(path: str, params: Mapping[str, str], *, first: bool, next_page: str | None) -> str:
    """Links to the first page (when not on it) and the next one (when there is one)."""
    kept = {name: value for name, value in params.items() if value}
    links = []
    if not first:
        links.append(f'<a href="{escape(path + _query(kept))}" rel=first>First page</a>')
    if next_page is not None:
        href = escape(path + _query({**kept, "after": next_page}))
        links.append(f'<a href="{href}" rel=next>Next page</a>')
    return f'<p class="pages">{" · ".join(links)}</p>' if links else ""


def _query(params: Mapping[str, str]) -> str:
    return "?" + urlencode(params) if params else ""


def machine(document: Document) -> str:
    facts = _table(
        ("Fact", "Value"),
        (
            (
                label,
                _text(document[key])
                if "seen" not in key and "check" not in key
                else _when(document[key]),
            )
            for label, key in (
                ("Hostname", "hostname"),
                ("Kernel", "kernel"),
                ("Architecture", "architecture"),
                ("Tier", "tier"),
                ("Token", "token_id"),
                ("Client version", "client_version"),
                ("First seen", "first_seen"),
                ("Last check-in", "last_check_in"),
                ("Patch loaded", "patch_loaded"),
                ("Kernel support", "supported"),
            )
        ),
    )
    states = escape(", ".join(document["states"])) or '<span class="ok">fine</span>'
    history = _table(
        ("Received", "Patch", "Stage", "Result", "Health", "Reason"),
        (
            (
                _when(o["received"]),
                _text(o["patch_id"]),
                _text(o["stage"]),
                _text(o["result"]),
                _text(o["health"]),
                _text(o["reason"]),
            )
            for o in document["history"]
        ),
    )
    return f"{facts}<p>State: {states}</p><h2>History</h2>{history}"


def tokens(rows: Sequence[Document]) -> str:
    return _table(
        ("Id", "Hint", "Tier", "Machines", "Created", "Revoked"),
        (
            (
                str(t["id"]),
                escape(t["hint"]) + "…",
                escape(t["tier"]),
                f"{t['machines']}/{t['machine_limit']}",
                _when(t["created"]),
                _when(t["revoked"]),
            )
            for t in rows
        ),
    )


def audit(rows: Sequence[Document], *, first: bool = True, next_page: str | None = None) -> str:
    table = _table(
        ("When", "Who", "From", "Action", "Target", "Detail"),
        (
            (
                _when(e["at"]),
                _text(e["actor"]),
                _text(e["source"]),
                _text(e["action"]),
                _text(e["target"]),
                _text(e["detail"]),
            )
            for e in rows
        ),
    )
    return table + _page_links("/ui/audit", {}, first=first, next_page=next_page)
