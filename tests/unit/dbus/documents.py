"""Status documents in the shape of docs/CONTRACTS.md, for the D-Bus, notifier and motd tests."""

from __future__ import annotations

import copy
from typing import Any

APPLIED: dict[str, Any] = {
    "Client-Version": "0.1.0",
    "Machine-Id": "0123456789abcdef",
    "Architecture": "amd64",
    "CPU-Model": "QEMU Virtual CPU",
    "Boot-Time": "2026-01-10T08:00:00Z",
    "Uptime": 3600,
    "Last-Check": "2026-01-10T11:55:00Z",
    "Next-Check": "2026-01-10T12:55:00Z",
    "tier": "community",
    "Enrolled": True,
    "Daemon-Running": True,
    "Status": [
        {
            "Kernel": "6.1.0-56-amd64",
            "Running": True,
            "Supported": "supported",
            "UpgradeRequiredDate": None,
            "Livepatch": {
                "CheckState": "checked",
                "State": "applied",
                "Version": "3",
                "Fixes": [
                    {
                        "Name": "cve-2024-1086",
                        "Description": "nf_tables use-after-free",
                        "Bug": "",
                        "Patched": True,
                        "Severity": "high",
                    },
                    {
                        "Name": "cve-2023-0266",
                        "Description": "ALSA use-after-free",
                        "Bug": "",
                        "Patched": True,
                        "Severity": "medium",
                    },
                    {
                        "Name": "cve-2023-3390",
                        "Description": "nf_tables",
                        "Bug": "",
                        "Patched": True,
                        "Severity": "low",
                    },
                ],
            },
        }
    ],
    "Applied-Patches": ["lp-6.1.0-56-amd64-3"],
    "Errors": [],
}


def document(**changes: Any) -> dict[str, Any]:
    """APPLIED with top-level keys replaced; `State`, `CheckState`, `Supported`,
    `UpgradeRequiredDate`, `Fixes` change the running kernel's entry."""
    doc = copy.deepcopy(APPLIED)
    entry = doc["Status"][0]
    for key in ("Supported", "UpgradeRequiredDate", "Kernel"):
        if key in changes:
            entry[key] = changes.pop(key)
    for key in ("State", "CheckState", "Fixes", "Version"):
        if key in changes:
            entry["Livepatch"][key] = changes.pop(key)
    doc.update(changes)
    return doc
