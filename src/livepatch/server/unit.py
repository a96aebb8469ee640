"""`livepatch-server install-unit`: a hardened systemd unit and its system user.

The service runs as its own system user (declared in sysusers.d, so
``systemd-sysusers`` creates it), which also runs ``livepatch-admin`` on the
host (``sudo -u livepatch-server``), so files in the data directory keep one
owner. The data directory is the unit's StateDirectory; the file system is
read-only to it otherwise (ProtectSystem=strict); the TLS key reaches it as
a systemd credential, so it may stay root-owned and 0600.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

USER = "livepatch-server"
UNIT_NAME = "livepatch-server.service"
STATE_DIR = Path("/var/lib/livepatch-server")
LIMIT_NOFILE = 65536


@dataclass(frozen=True)
class UnitOptions:
    executable: Path
    host: str
    port: int | None
    tls_cert: Path | None
    tls_key: Path | None
    public_targets: bool
    environment_file: Path | None


def unit_text(options: UnitOptions) -> str:
    """The unit file (a pure function of the options, for tests and review)."""
    argv = [str(options.executable), "serve", "--host", options.host]
    credentials = []
    if options.port is not None:
        argv += ["--port", str(options.port)]
    if options.tls_cert is not None and options.tls_key is not None:
        argv += ["--tls-cert", "%d/tls-cert", "--tls-key", "%d/tls-key"]
        credentials = [
            f"LoadCredential=tls-cert:{options.tls_cert}",
            f"LoadCredential=tls-key:{options.tls_key}",
        ]
    if options.public_targets:
        argv.append("--public-targets")
    environment = [f"Environment=LIVEPATCH_SERVER_DATA={STATE_DIR}"]
    if options.environment_file is not None:
        # e.g. LIVEPATCH_SERVER_DATABASE=postgresql+psycopg://… (keeps a password off argv)
        environment.append(f"EnvironmentFile={options.environment_file}")
    lines = [
        "[Unit]",
        "Description=livepatch patch service",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"User={USER}",
        f"Group={USER}",
        f"ExecStart={shlex.join(argv)}",
        *environment,
        *credentials,
        "Restart=on-failure",
        "RestartSec=5s",
        f"LimitNOFILE={LIMIT_NOFILE}",
        f"StateDirectory={STATE_DIR.name}",
        "StateDirectoryMode=0700",
        "UMask=0077",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RemoveIPC=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def sysusers_text() -> str:
    return f'u {USER} - "livepatch patch service" {STATE_DIR}\n'


def install(prefix: Path, options: UnitOptions) -> list[Path]:
    """Write the unit and the sysusers.d entry under `prefix`; the files written."""
    written = []
    for relative, text in (
        (Path("etc/systemd/system") / UNIT_NAME, unit_text(options)),
        (Path("etc/sysusers.d") / f"{USER}.conf", sysusers_text()),
    ):
        path = prefix / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text)
        temporary.chmod(0o644)
        os.replace(temporary, path)
        written.append(path)
    return written


def default_executable() -> Path:
    """The livepatch-server next to this interpreter (a venv's or the system's)."""
    return Path(sys.executable).with_name("livepatch-server").absolute()


NEXT_STEPS = f"""Next, as root:
  systemd-sysusers && systemctl daemon-reload
  install -d -o {USER} -g {USER} -m 0700 {STATE_DIR}
  sudo -u {USER} livepatch-admin keys init --data-dir {STATE_DIR}
  systemctl enable --now livepatch-server
  sudo -u {USER} livepatch-admin admins create NAME --role admin --data-dir {STATE_DIR}
"""
