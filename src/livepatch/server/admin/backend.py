"""Where `livepatch-admin` commands run: on this host's service, or a remote one.

Both backends answer the same calls with the same JSON documents (those of
``operations.py``), so each command prints the same way locally and through
``--server URL --api-key-file FILE``. Locally the acting administrator is
``local:USER``, audited from ``cli``.
"""

from __future__ import annotations

import base64
import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from livepatch.server.errors import ConfigurationError, ServerError

if TYPE_CHECKING:
    import argparse

    from livepatch.server.audit import Actor
    from livepatch.server.service import Service

ADMIN_KEY_HEADER = "X-Admin-Key"
TIMEOUT = 60.0
MAX_KEY_FILE = 4096


class Backend(Protocol):
    def get(self, path: str, params: dict[str, Any] | None = None) -> Any: ...

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any: ...

    def put(self, path: str, body: dict[str, Any]) -> Any: ...

    def close(self) -> None: ...


class RemoteError(ServerError):
    """The remote service refused or failed: its message, with its status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Remote:
    """The admin API of a service over HTTPS."""

    def __init__(self, url: str, key: str, *, ca_file: Path | None = None) -> None:
        import requests

        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ConfigurationError(
                f"{url} is not an https:// URL: the API key must not travel in clear text."
            )
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers[ADMIN_KEY_HEADER] = key
        # Per request: a session's `verify` loses to $REQUESTS_CA_BUNDLE otherwise.
        self.verify: str | bool = str(ca_file) if ca_file is not None else True

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = self.session.request(
                method,
                f"{self.url}/v1/admin{path}",
                timeout=TIMEOUT,
                verify=self.verify,
                **kwargs,
            )
        except requests.exceptions.SSLError as error:
            raise ConfigurationError(
                f"TLS with {self.url} failed: give --ca-file with its CA certificate."
            ) from error
        except requests.RequestException as error:
            raise ServerError(f"Cannot reach {self.url}: {type(error).__name__}.") from error
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code >= 400:
            detail = document.get("error", {}) if isinstance(document, dict) else {}
            raise RemoteError(
                response.status_code,
                str(detail.get("code", "http-error")),
                str(detail.get("message", f"The service answered HTTP {response.status_code}.")),
            )
        return document

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._call("GET", path, params={k: v for k, v in (params or {}).items() if v})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", path, json=body if body is not None else {})

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("PUT", path, json=body)

    def close(self) -> None:
        self.session.close()


class Local:
    """The service over this host's data directory and database, as the API routes it."""

    def __init__(self, service: Service, actor: Actor) -> None:
        self.service = service
        self.actor = actor

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        from livepatch.server import fleet, operations

        parts = path.strip("/").split("/")
        params = params or {}
        match parts:
            case ["tokens"]:
                return operations.list_tokens(self.service)
            case ["patches"]:
                return operations.list_patches(self.service)
            case ["patches", patch_id]:
                return operations.show_patch(self.service, patch_id)
            case ["machines"]:
                state, token = params.get("state"), params.get("token")
                filters = fleet.Filters(
                    fleet.MachineState(state) if state else None,
                    params.get("kernel") or None,
                    params.get("patch") or None,
                    int(token) if token else None,
                    params.get("architecture") or None,
                )
                return operations.list_machines(
                    self.service,
                    filters,
                    limit=int(params.get("limit") or fleet.DEFAULT_PAGE),
                    after=params.get("after") or None,
                )
            case ["machines", machine_id]:
                return operations.show_machine(self.service, machine_id)
            case ["admins"]:
                return operations.list_admins(self.service)
            case ["audit"]:
                after = params.get("after")
                return operations.audit_log(
                    self.service,
                    limit=int(params.get("limit") or 100),
                    after=str(after) if after else None,
                )
            case ["keys"]:
                return operations.keys_status(self.service)
        raise AssertionError(f"no local GET {path}")

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        from livepatch.rollout import Stage, Tier
        from livepatch.server import admins, operations, patches

        parts = path.strip("/").split("/")
        body = body or {}
        service, actor = self.service, self.actor
        match parts:
            case ["tokens"]:
                tier = Tier(body.get("tier", "community"))
                return operations.create_token(
                    service, actor, tier=tier, machines=body.get("machines")
                )
            case ["tokens", token, "revoke"]:
                return operations.revoke_token(service, actor, token)
            case ["patches"]:
                publication = patches.Publication(
                    module=base64.b64decode(body["module_base64"]),
                    kernels=body["kernels"],
                    cves=body["cves"],
                    severity=patches.Severity(body["severity"]),
                    description=body["description"],
                    overrides=body.get("overrides", {}),
                    preflight=body.get("preflight"),
                )
                return operations.publish(service, actor, publication)
            case ["patches", patch_id, "promote"]:
                to = Stage(body["to"]) if body.get("to") else None
                return operations.promote(service, actor, patch_id, to)
            case ["patches", patch_id, "halt"]:
                return operations.halt(service, actor, patch_id, body["reason"])
            case ["patches", patch_id, "resume"]:
                return operations.resume(service, actor, patch_id)
            case ["patches", patch_id, "withdraw"]:
                return operations.withdraw(service, actor, patch_id)
            case ["patches", patch_id, "revoke"]:
                return operations.revoke(service, actor, patch_id, body["reason"])
            case ["admins"]:
                return operations.create_admin(
                    service, actor, body["name"], admins.Role(body["role"])
                )
            case ["admins", name, "revoke"]:
                return operations.revoke_admin(service, actor, name)
        raise AssertionError(f"no local POST {path}")

    def put(self, path: str, body: dict[str, Any]) -> Any:
        from datetime import datetime

        from livepatch.server import operations
        from livepatch.server.errors import InvalidRequest

        match path.strip("/").split("/"):
            case ["kernels", kernel, "end-of-life"]:
                try:
                    when = datetime.fromisoformat(body["end_of_life"])
                except ValueError as error:
                    raise InvalidRequest(
                        f"{body['end_of_life']!r} is not a date: use e.g. 2027-01-01T00:00:00Z."
                    ) from error
                return operations.set_end_of_life(self.service, self.actor, kernel, when)
        raise AssertionError(f"no local PUT {path}")

    def close(self) -> None:
        self.service.close()


def read_key(path: Path) -> str:
    try:
        with path.open("rb") as file:
            text = file.read(MAX_KEY_FILE + 1)
    except OSError as error:
        raise ConfigurationError(
            f"Cannot read the API key file {path}: {error.strerror}."
        ) from error
    key = text.decode("ascii", "replace").strip()
    if not key or len(text) > MAX_KEY_FILE or any(c.isspace() for c in key):
        raise ConfigurationError(f"{path} does not hold one API key: put only the key in it.")
    return key


def open_backend(args: argparse.Namespace) -> Backend:
    """The remote service when --server is given, else this host's."""
    server = getattr(args, "server", None)
    if server:
        key_file = getattr(args, "api_key_file", None)
        if key_file is None:
            raise ConfigurationError("--server needs --api-key-file FILE holding an admin API key.")
        return Remote(server, read_key(key_file), ca_file=getattr(args, "ca_file", None))
    from livepatch.server.admin._common import open_service
    from livepatch.server.audit import Actor

    return Local(open_service(args), Actor(f"local:{getpass.getuser()}", "cli"))
