"""``livepatch-admin keys …``, ``sign`` and ``verify``: thin argument handling over
``livepatch.trust.admin``. Imports stay lazy so the admin command starts fast."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _dirs(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """Key, metadata and targets directories, laid out as ``livepatch-server`` does."""
    from livepatch.server.config import default_data_dir

    data_dir: Path = args.data_dir or default_data_dir()
    key_dir: Path = args.key_dir or data_dir / "keys"
    metadata_dir: Path = getattr(args, "metadata_dir", None) or data_dir / "blobs" / "metadata"
    return key_dir, metadata_dir, metadata_dir.parent / "targets"


def _key_directory(args: argparse.Namespace) -> Any:
    from livepatch.trust.keys import KeyDirectory

    return KeyDirectory(_dirs(args)[0])


def _add_locations(parser: argparse.ArgumentParser, *, metadata: bool = False) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="server data directory (default: $LIVEPATCH_SERVER_DATA or /var/lib/livepatch-server)",
    )
    parser.add_argument("--key-dir", type=Path, help="key directory (default: DATA_DIR/keys)")
    if metadata:
        parser.add_argument(
            "--metadata-dir",
            type=Path,
            help="TUF metadata directory (default: DATA_DIR/blobs/metadata)",
        )


def _init(args: argparse.Namespace) -> int:
    from livepatch.server.config import default_data_dir
    from livepatch.server.private import private_directory

    private_directory(args.data_dir or default_data_dir())
    keys = _key_directory(args)
    keys.init(
        algorithm=args.algorithm,
        organization=args.organization,
        ca_days=args.ca_days,
        signing_days=args.signing_days,
    )
    _, cert = keys.current_signing()
    print(
        f"Created keys in {keys.path}; the signing certificate is valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d}."
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from livepatch.trust import admin

    if getattr(args, "server", None):
        return _remote_status(args)

    keys = _key_directory(args)
    lines = admin.status(keys, _dirs(args)[1])
    if args.format == "json":
        document = [line.document() for line in lines]
        print(json.dumps(document, indent=2))
    else:
        for line in lines:
            print(
                f"{line.not_after:%Y-%m-%d}  {line.days_left:7.0f} days  "
                f"{line.what}  {line.subject}"
            )
        for line in lines:
            if line.warning:
                print(f"warning: {line.warning}")
    if args.format == "text":
        for entry in keys.signing_certificates():
            print(f"signing certificate {entry.serial}: {entry.status}")
    return 0


def _remote_status(args: argparse.Namespace) -> int:
    """`keys status` of a remote service, through its admin API."""
    from livepatch.server.admin.backend import open_backend

    backend = open_backend(args)
    try:
        lines = backend.get("/keys")
    finally:
        backend.close()
    if args.format == "json":
        print(json.dumps(lines, indent=2))
        return 0
    for line in lines:
        when, left = line["not_after"][:10], line["days_left"]
        print(f"{when}  {left:7.0f} days  {line['what']}  {line['subject']}")
    for line in lines:
        if line["warning"]:
            print(f"warning: {line['warning']}")
    return 0


def _rotate_signing(args: argparse.Namespace) -> int:
    from livepatch.trust import admin

    keys = _key_directory(args)
    entry = keys.issue_signing_certificate(days=args.days, grace_days=args.grace_days)
    print(
        f"New signing certificate {entry.serial}; the previous one stays trusted "
        f"for {args.grace_days} days."
    )
    _, metadata_dir, targets_dir = _dirs(args)
    if admin.republish_certificates(keys, metadata_dir, targets_dir):
        print("Published the new certificate bundle.")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from livepatch.trust import admin

    keys = _key_directory(args)
    entry = keys.revoke_signing_certificate(args.serial)
    print(f"Revoked signing certificate {entry.serial}.")
    _, metadata_dir, targets_dir = _dirs(args)
    if admin.republish_certificates(keys, metadata_dir, targets_dir):
        print("Published the certificate bundle without it.")
    return 0


def _rotate_tuf(args: argparse.Namespace) -> int:
    from livepatch.trust import admin

    _, metadata_dir, targets_dir = _dirs(args)
    version = admin.rotate_tuf_key(_key_directory(args), args.role, metadata_dir, targets_dir)
    print(f"Rotated the {args.role} key; published root version {version}.")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from livepatch.trust import admin

    signer = admin.sign_file(args.module, _key_directory(args), args.output)
    print(f"Signed {args.output or args.module} as {signer.name}.")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from livepatch.trust import admin

    keys = None if args.cert and args.key_dir is None else _key_directory(args)
    signer = admin.verify_file(args.module, keys=keys, cert_files=args.cert or ())
    print(f"{args.module}: signed by {signer.name}")
    return 0


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="manage signing keys and certificates")
    commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    init = commands.add_parser("init", help="create the CA, signing certificate and TUF keys")
    _add_locations(init)
    init.add_argument(
        "--algorithm",
        choices=("rsa", "ecdsa"),
        default="rsa",
        help="module-signing key type (Debian kernels verify RSA)",
    )
    init.add_argument("--organization", default="livepatch")
    init.add_argument("--ca-days", type=int, default=3650)
    init.add_argument("--signing-days", type=int, default=730)
    init.set_defaults(handler=_init, local_only=True)

    status = commands.add_parser("status", help="show what expires when")
    _add_locations(status, metadata=True)
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(handler=_status)

    rotate = commands.add_parser("rotate-signing", help="issue a new module-signing certificate")
    _add_locations(rotate, metadata=True)
    rotate.add_argument("--days", type=int, default=730)
    rotate.add_argument(
        "--grace-days", type=int, default=30, help="how long the previous certificate stays trusted"
    )
    rotate.set_defaults(handler=_rotate_signing, local_only=True)

    revoke = commands.add_parser("revoke-signing", help="stop trusting a signing certificate")
    _add_locations(revoke, metadata=True)
    revoke.add_argument("serial", help="serial number (hex) as 'keys status' shows it")
    revoke.set_defaults(handler=_revoke, local_only=True)

    rotate_tuf = commands.add_parser("rotate-tuf", help="rotate a TUF role key (root included)")
    _add_locations(rotate_tuf, metadata=True)
    rotate_tuf.add_argument("role", choices=("root", "targets", "snapshot", "timestamp"))
    rotate_tuf.set_defaults(handler=_rotate_tuf, local_only=True)

    sign = subparsers.add_parser("sign", help="sign a kernel module like scripts/sign-file")
    sign.add_argument("module", type=Path, metavar="MODULE.ko")
    sign.add_argument("--output", type=Path, help="write here instead of in place")
    _add_locations(sign)
    sign.set_defaults(handler=_sign, local_only=True)

    verify = subparsers.add_parser("verify", help="check a kernel module's signature")
    verify.add_argument("module", type=Path, metavar="MODULE.ko")
    verify.add_argument(
        "--cert",
        type=Path,
        action="append",
        metavar="CERT.pem",
        help="trust these certificates (instead of the key directory)",
    )
    _add_locations(verify)
    verify.set_defaults(handler=_verify, local_only=True)
