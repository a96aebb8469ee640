"""A desktop for the notifier: Xvfb, dunst on a private session bus, dunstctl queries."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

WAIT = 15.0

# dunst's history does not list the urgency; a timeout per urgency reveals it.
URGENCY_TIMEOUTS = {"LOW": 101, "NORMAL": 102, "CRITICAL": 103}
DUNSTRC = "[global]\n    history_length = 50\n" + "".join(
    f"[urgency_{name.lower()}]\n    timeout = {seconds}\n"
    for name, seconds in URGENCY_TIMEOUTS.items()
)


@contextmanager
def xvfb() -> Iterator[str]:
    """A virtual X display; yields its DISPLAY value."""
    read, write = os.pipe()
    process = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-nolisten", "tcp", "-screen", "0", "800x600x24"],
        pass_fds=[write],
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as stream:
            number = stream.readline().strip()
        assert number.isdigit(), "Xvfb did not start"
        yield f":{number}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@asynccontextmanager
async def running(
    command: Sequence[str], env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A background process, terminated (and reaped) on exit."""
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), WAIT)


async def dunstctl(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "dunstctl", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode()


@asynccontextmanager
async def dunst(env: dict[str, str], home: Path) -> AsyncIterator[None]:
    """dunst on the session bus of `env`, ready when this enters."""
    config = home / "dunstrc"
    config.write_text(DUNSTRC)
    async with running(["dunst", "-config", str(config)], env):
        for _ in range(int(WAIT / 0.1)):
            code, _ = await dunstctl(env, "count")
            if code == 0:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("dunst did not come up on the session bus")
        yield


async def displayed(env: dict[str, str]) -> int:
    code, out = await dunstctl(env, "count", "displayed")
    assert code == 0
    return int(out.strip())


async def history(env: dict[str, str]) -> list[dict[str, Any]]:
    """Every notification dunst showed, oldest first (closes the displayed ones).

    Adds "urgency", read back from the timeout that DUNSTRC gives each urgency.
    """
    assert (await dunstctl(env, "close-all"))[0] == 0
    code, out = await dunstctl(env, "history")
    assert code == 0
    shown = [
        {key: value["data"] for key, value in entry.items()}
        for entry in reversed(json.loads(out)["data"][0])
    ]
    by_timeout = {seconds * 1_000_000: name for name, seconds in URGENCY_TIMEOUTS.items()}
    return [entry | {"urgency": by_timeout.get(entry["timeout"], "?")} for entry in shown]


async def wait_displayed(env: dict[str, str], count: int) -> None:
    for _ in range(int(WAIT / 0.1)):
        if await displayed(env) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"dunst did not display {count} notification(s) in {WAIT} s")


async def wait_line(stream: asyncio.StreamReader | None, text: str) -> list[str]:
    """Read lines until one contains `text`; returns the lines read."""
    assert stream is not None
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(stream.readline(), WAIT)).decode()
        assert line, f"the process ended before saying {text!r}: {lines}"
        lines.append(line)
        if text in line:
            return lines


def notifier_command(system: str, session: str, state: Path, *, retry: float = 1.0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "livepatch.dbus.notifier",
        "--system-bus",
        system,
        "--session-bus",
        session,
        "--coalesce",
        "0.5",
        "--retry",
        str(retry),
        "--state",
        str(state),
        "--debug",
    ]
