"""Paging's pure parts: cursors, the dashboard's page links and its revoke controls."""

from __future__ import annotations

import pytest

from livepatch.server import audit
from livepatch.server.errors import InvalidRequest
from livepatch.server.fleet_query import Cursor
from livepatch.server.ui import pages


def test_a_machine_cursor_is_the_record_id_then_the_machine_id() -> None:
    assert Cursor("web-01.example:a", 42).encode() == "42:web-01.example:a"
    assert Cursor.decode("42:web-01.example:a") == Cursor("web-01.example:a", 42)
    assert Cursor.decode("2147483647:m") == Cursor("m", 2**31 - 1)


@pytest.mark.parametrize(
    "text", ["", "42", "42:", ":m", "x:m", "2147483648:m", "1:-m", "1:m m", "1:" + "m" * 129]
)
def test_a_machine_cursor_the_service_did_not_make_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="pass the `next` of the previous page"):
        Cursor.decode(text)


@pytest.mark.parametrize(("text", "entry"), [(None, None), ("1", 1), ("2147483647", 2**31 - 1)])
def test_an_audit_cursor_is_an_entry_id(text: str | None, entry: int | None) -> None:
    assert audit.cursor(text) == entry


@pytest.mark.parametrize("text", ["", "0", "-1", "2147483648", "1e3", "٣", "12 "])
def test_an_audit_cursor_that_is_not_an_entry_id_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="not a page cursor"):
        audit.cursor(text)


def test_the_machine_table_links_the_first_and_next_pages_keeping_the_filters() -> None:
    filters = {"state": "stale", "kernel": "", "patch": "lp-1"}
    first = pages.machines([], filters, first=True, next_page="7:m&x")
    assert (
        '<a href="/ui/machines?state=stale&amp;patch=lp-1&amp;after=7%3Am%26x" rel=next>' in first
    )
    assert "rel=first" not in first
    last = pages.machines([], filters, first=False, next_page=None)
    assert '<a href="/ui/machines?state=stale&amp;patch=lp-1" rel=first>First page</a>' in last
    assert "rel=next" not in last
    assert '<p class="pages">' not in pages.machines([], {}, first=True, next_page=None)


PATCH = {
    "patch_id": "lp-6.1.0-56-amd64-1",
    "withdrawn": False,
    "revoked": None,
    "kernels": ["6.1.0-56-amd64"],
    "cves": ["CVE-2024-1086"],
    "severity": "high",
    "rollout": {
        "stage": "canary",
        "percentage": 5.0,
        "halted": False,
        "halt_reason": None,
        "since": "2026-12-01T00:00:00+00:00",
    },
    "reports": [{"stage": "canary", "kernel": "6.1.0-56-amd64", "applied": 3, "failed": 1}],
}


def test_operators_get_a_revoke_form_whose_reason_is_required() -> None:
    html = pages.rollout(PATCH, {}, "", can_steer=True, csrf="c" * 64)
    form = html.split('action="/ui/patches/lp-6.1.0-56-amd64-1/revoke">')[1].split("</form>")[0]
    assert "name=reason" in form and " required" in form and "maxlength=1024" in form
    assert 'value="revoke"' in form and f'value="{"c" * 64}"' in form
    assert "button" not in pages.rollout(PATCH, {}, "", can_steer=False, csrf="c" * 64)


def test_a_revoked_patch_shows_its_reason_and_no_buttons() -> None:
    revoked = {
        **PATCH,
        "revoked": {"reason": "oops <b>", "at": "2026-12-02T10:00:00Z"},
        "rollout": {**PATCH["rollout"], "halted": True, "halt_reason": "revoked: oops <b>"},
    }
    html = pages.rollout(revoked, {}, "", can_steer=True, csrf="c" * 64)
    assert "<span class=status>REVOKED</span>" in html
    assert "Revoked at 2026-12-02 10:00:00: <span class=reason>oops &lt;b&gt;</span>" in html
    assert "<button" not in html


def test_the_confirmation_carries_the_reason_and_names_the_patch() -> None:
    html = pages.confirm_revoke(PATCH, 'a "quoted" reason', "c" * 64)
    assert '<input type=hidden name=reason value="a &quot;quoted&quot; reason">' in html
    assert '<input type=hidden name=confirm value="lp-6.1.0-56-amd64-1">' in html
    assert "Applied reports so far: 3." in html
    assert 'href="/ui/rollouts#lp-6.1.0-56-amd64-1">Cancel</a>' in html
