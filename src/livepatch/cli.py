"""`livepatch`: enable, disable, status, refresh, clear-crash, config, daemon, notifier.

Parsing and printing only; the work is in ``livepatch.client.commands``.
Imports stay lazy: ``livepatch status`` must start about as fast as a bare
Python, so nothing here pulls in requests, cryptography, tuf or dbus.
"""

import os
import sys

from livepatch import __version__

# typing alone costs `livepatch status` about 10 ms: annotations only, so it is
# never imported at run time (mypy reads this constant as typing.TYPE_CHECKING).
# The fast path's modules write the annotations that name these as strings rather
# than import __future__ (annotations), which costs them 0.1 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

    from livepatch.client.checkin import Runtime

PROGRAM = "livepatch"
FORMATS = ("human", "humane", "json", "yaml")
# errors.NotEnabled's sentence and exit code for the fast path; a unit test keeps them equal.
NOT_ENABLED = "Machine is not enabled; run `livepatch enable TOKEN` as root to enable it."
NOT_ENABLED_EXIT = 1
REDACTED_NOTE = (
    f"{PROGRAM}: passwords are shown as REDACTED; run `sudo livepatch config` to see them."
)
# `livepatch --help` without importing argparse (half a bare Python's start-up):
# build_parser().format_help() at 80 columns; a unit test keeps the two equal.
HELP = """\
usage: livepatch [-h] [--version] [--debug] COMMAND ...

Apply kernel security fixes without rebooting.

positional arguments:
  COMMAND
    enable     enrol this machine with a token and start patching
    disable    de-enrol this machine and stop patching
    status     show kernel, enrolment and patch state
    refresh    check for patches now and wait for the outcome
    clear-crash
               allow a patch that was loading when the machine crashed again
    config     show settings, or set them with KEY=VALUE
    daemon     run the patching service in the foreground
    notifier   show desktop notifications of applied patches (per-user agent)

options:
  -h, --help   show this help message and exit
  --version    show program's version number and exit
  --debug      show tracebacks and debug logs
"""


def build_parser() -> "argparse.ArgumentParser":
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Apply kernel security fixes without rebooting."
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    enable = sub.add_parser("enable", help="enrol this machine with a token and start patching")
    token = enable.add_mutually_exclusive_group(required=True)
    token.add_argument(
        "token", metavar="TOKEN", nargs="?", help="the enrolment token from your service"
    )
    token.add_argument(
        "--token-file",
        metavar="PATH",
        help="read the token from PATH, or from standard input if PATH is - "
        "(keeps it out of the process list)",
    )
    enable.set_defaults(handler=cmd_enable)

    disable = sub.add_parser("disable", help="de-enrol this machine and stop patching")
    disable.add_argument(
        "--unload", action="store_true", help="also disable and unload the applied patches"
    )
    disable.set_defaults(handler=cmd_disable)

    status = sub.add_parser("status", help="show kernel, enrolment and patch state")
    status.add_argument("--verbose", "-v", action="store_true", help="show more detail")
    status.add_argument("--format", choices=FORMATS, default="human")
    status.set_defaults(handler=cmd_status)

    refresh = sub.add_parser("refresh", help="check for patches now and wait for the outcome")
    refresh.set_defaults(handler=cmd_refresh)

    clear_crash = sub.add_parser(
        "clear-crash", help="allow a patch that was loading when the machine crashed again"
    )
    clear_crash.set_defaults(handler=cmd_clear_crash)

    config = sub.add_parser("config", help="show settings, or set them with KEY=VALUE")
    config.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    config.set_defaults(handler=cmd_config)

    daemon = sub.add_parser("daemon", help="run the patching service in the foreground")
    daemon.set_defaults(handler=cmd_daemon)

    # Its options belong to livepatch.dbus.notifier, which parses them itself.
    notifier = sub.add_parser(
        "notifier",
        help="show desktop notifications of applied patches (per-user agent)",
        add_help=False,
    )
    notifier.set_defaults(handler=cmd_notifier, passes_options=True)
    return parser


def _runtime() -> "Runtime":
    from livepatch.client.wiring import default_runtime

    return default_runtime()


def _use_colour(stream: "Any") -> bool:
    return bool(stream.isatty()) and "NO_COLOR" not in os.environ


def _unicode(stream: "Any") -> bool:
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return encoding in ("utf8", "utf_8")


def render_status(doc: "dict[str, Any]", fmt: str, verbose: bool) -> str:
    from livepatch.client import render

    if fmt == "json":
        return render.render_json(doc)
    if fmt == "yaml":
        return render.render_yaml(doc)
    colour = fmt == "human" and _use_colour(sys.stdout)
    return render.render_human(doc, verbose=verbose, colour=colour, unicode=_unicode(sys.stdout))


def cmd_status(args: "argparse.Namespace") -> int:
    from livepatch.client import commands

    _show_status(commands.status(_runtime()), args.format, args.verbose)
    return 0


def _show_status(doc: "dict[str, Any]", fmt: str, verbose: bool) -> None:
    """Print `doc`; NotEnabled (after the document, for machines) when not enrolled."""
    if not doc["Enrolled"]:
        from livepatch.client.errors import NotEnabled

        if fmt in ("json", "yaml"):
            sys.stdout.write(render_status(doc, fmt, verbose))
        raise NotEnabled()
    _print_status(doc, fmt, verbose)


def _print_status(doc: "dict[str, Any]", fmt: str, verbose: bool) -> None:
    if not doc["Daemon-Running"] and fmt in ("human", "humane"):
        print(
            f"{PROGRAM}: the livepatch daemon is not running; this is the state it last recorded.",
            file=sys.stderr,
        )
    sys.stdout.write(render_status(doc, fmt, verbose))


def _fast_path(argv: "Sequence[str]") -> int | None:
    """Answer the commands people and monitoring run most before argparse or the
    client is imported: `--help`, `config` (reading) and `status`.

    None means "take the normal path", which every other command and every
    case these cannot settle alone (see ``quickstatus``, ``quickconfig``) takes.
    """
    if list(argv) in (["--help"], ["-h"]):
        sys.stdout.write(HELP)
        return 0
    if list(argv) == ["config"]:
        return _fast_config()
    return _fast_status(argv)


def _fast_status(argv: "Sequence[str]") -> int | None:
    """`livepatch status` from the status cache or the state files (``quickstatus``)."""
    if not argv or argv[0] != "status":
        return None
    fmt, verbose = "human", False
    options = list(argv[1:])
    while options:
        option = options.pop(0)
        if option in ("--verbose", "-v"):
            verbose = True
        elif option == "--format" and options:
            fmt = options.pop(0)
        elif option.startswith("--format="):
            fmt = option.partition("=")[2]
        else:
            return None
    if fmt not in FORMATS:
        return None
    from livepatch.client import statuscache

    state_dir = statuscache.state_dir()
    doc = statuscache.load(state_dir)
    if not doc:  # a cache hit, what the daemon leaves, needs none of quickstatus's imports
        from livepatch.client import quickstatus

        doc = quickstatus.build(state_dir)
    if doc is None:
        return None
    try:
        if not doc["Enrolled"]:
            return _fast_not_enabled(doc, fmt, verbose)
        _print_status(doc, fmt, verbose)
        sys.stdout.flush()
    except BrokenPipeError:
        return 141
    return 0


def _fast_not_enabled(doc: "dict[str, Any]", fmt: str, verbose: bool) -> int:
    """What `_show_status` and the error handler print for NotEnabled, without
    importing the error classes (a tenth of the fast path's budget)."""
    if fmt in ("json", "yaml"):
        sys.stdout.write(render_status(doc, fmt, verbose))
    sys.stdout.flush()
    print(f"{PROGRAM}: {NOT_ENABLED}", file=sys.stderr)
    return NOT_ENABLED_EXIT


def _fast_config() -> int | None:
    """`livepatch config` (reading) from the settings files (``quickconfig``)."""
    from livepatch.client import quickconfig, statuscache

    settings = quickconfig.load(statuscache.state_dir())
    if settings is None:
        return None
    try:
        sys.stdout.write(quickconfig.render(settings))
        sys.stdout.flush()
    except BrokenPipeError:
        return 141
    if quickconfig.redacted(settings):
        print(REDACTED_NOTE, file=sys.stderr)
    return 0


def cmd_enable(args: "argparse.Namespace") -> int:
    from livepatch.client import commands

    commands.require_root("enable")
    token = commands.read_token(args.token, args.token_file, sys.stdin.buffer)
    result = commands.enable(_runtime(), token)
    print(f"Machine enabled (machine id {result.machine_id}, tier {result.tier}).")
    if result.outcome is None:
        doc = (result.daemon_answer or {}).get("status") or commands.status(_runtime())
        error = (result.daemon_answer or {}).get("error")
        message = error.get("message") if isinstance(error, dict) else None
    else:
        doc = commands.status(_runtime())
        message = str(result.outcome.error) if result.outcome.error else None
    _print_patch_lines(doc)
    if message:
        print(f"{PROGRAM}: {message}", file=sys.stderr)
        return 1
    return 0


def _print_patch_lines(doc: "dict[str, Any]") -> None:
    if not doc.get("Status"):  # a daemon blocked by a missing plug: its error says it all
        return
    text = render_status(doc, "humane", False)
    wanted = ("kernel:", "kernel state:", "patch state:", "fix ")
    for line in text.splitlines():
        if line.startswith(wanted):
            print(line)


def cmd_disable(args: "argparse.Namespace") -> int:
    from livepatch.client import commands

    commands.require_root("disable")
    result = commands.disable(_runtime(), unload=args.unload)
    print("Machine disabled; it no longer checks for patches.")
    if result.unloaded:
        print(f"Disabled and unloaded: {', '.join(result.unloaded)}.")
    if result.kept and not args.unload:
        print(
            f"Loaded patches stay in the kernel until the next reboot: {', '.join(result.kept)} "
            "(use `livepatch disable --unload` to remove them)."
        )
    if result.service_error is not None:
        reason = str(result.service_error).rstrip(".")
        print(
            f"{PROGRAM}: the patch service was not told ({reason}); the "
            "machine keeps its credential so that `livepatch enable` can prove it is this "
            "machine: enable and disable it again once the service is reachable to free "
            "its slot.",
            file=sys.stderr,
        )
    for refusal in result.refused:
        print(f"{PROGRAM}: {refusal}", file=sys.stderr)
    return 1 if result.refused else 0


def cmd_refresh(args: "argparse.Namespace") -> int:
    from livepatch.client import commands

    commands.require_root("refresh")
    doc, error = commands.refresh(_runtime())
    _print_patch_lines(doc)
    if error is not None:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_clear_crash(args: "argparse.Namespace") -> int:
    from livepatch.client import commands

    commands.require_root("clear-crash")
    crash = commands.clear_crash(_runtime())
    if crash is None:
        print("No crash is recorded; nothing to clear.")
        return 0
    print(
        f"Cleared the crash recorded for patch {crash.patch_id}; the next check may load it again."
    )
    return 0


def cmd_config(args: "argparse.Namespace") -> int:
    from livepatch.client import commands
    from livepatch.client.paths import Paths

    paths = Paths.from_environment()
    if args.assignments:
        commands.require_root("config", purpose="to change settings")
        commands.set_config(paths, args.assignments)
        return 0
    shown = commands.show_config(paths)
    sys.stdout.write(shown.text)
    if shown.redacted:
        print(REDACTED_NOTE, file=sys.stderr)
    return 0


def cmd_daemon(args: "argparse.Namespace") -> int:
    import asyncio

    from livepatch import motd
    from livepatch.client import commands
    from livepatch.client.daemon import Daemon, default_bus
    from livepatch.snap.health import daemon_reporter

    commands.require_root("daemon")
    daemon = Daemon(
        _runtime(),
        bus=default_bus(),
        motd=motd.fragment_path(),
        isolate=True,
        on_status=daemon_reporter(os.environ),
    )
    asyncio.run(daemon.run())
    return 0


def cmd_notifier(args: "argparse.Namespace") -> int:
    # Imported here only: dbus-fast and asyncio stay out of every other command.
    from livepatch.dbus.notifier import main as notifier_main

    return notifier_main([*args.options, *(["--debug"] if args.debug else [])])


def main(argv: "Sequence[str] | None" = None) -> int:
    fast = _fast_path(sys.argv[1:] if argv is None else argv)
    if fast is not None:
        return fast
    from livepatch.cli_support import configure_logging, run

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_options", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.options = extra
    if args.command == "notifier":
        return int(args.handler(args))  # it configures logging and reports errors itself
    configure_logging(args.debug)
    if args.command == "daemon" and not args.debug:
        import logging

        logging.getLogger("livepatch").setLevel(logging.INFO)
    return run(lambda: int(args.handler(args)), program=PROGRAM, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
