"""What every command line entry point shares: one top-level error handler.

Expected failures (``LivepatchError``) become one sentence on stderr and a
non-zero exit; anything else is a bug and says so, with the traceback only
under ``--debug``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from livepatch.errors import LivepatchError


def configure_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run(command: Callable[[], int], *, program: str, debug: bool) -> int:
    """Run `command`, mapping errors to messages and exit codes."""
    try:
        return command()
    except LivepatchError as error:
        if debug:
            traceback.print_exc()
        print(f"{program}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{program}: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception:
        if debug:
            traceback.print_exc()
        else:
            print(
                f"{program}: an unexpected error occurred; run again with --debug "
                "for details and report it.",
                file=sys.stderr,
            )
        return 70


def wants_debug(argv: Sequence[str]) -> bool:
    return "--debug" in argv
