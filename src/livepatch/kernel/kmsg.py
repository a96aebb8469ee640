"""The kernel log as /dev/kmsg serves it: numbered records, read without blocking.

Each read() of /dev/kmsg returns one record, ``PRIO,SEQ,USEC,FLAGS;TEXT``
followed by continuation lines (`` KEY=VALUE``) that we drop. Sequence numbers
only grow within a boot, so "everything after record N" is how the health
check finds what the kernel said since a patch was loaded. Records the ring
buffer overwrote before we read them are skipped (the read fails with EPIPE).

``read_ring_buffer`` is the other door to the same log, syslog(2): under snapd a
snap whose interfaces tag devices gets a device cgroup, which refuses /dev/kmsg
(EPERM, nothing in the audit log) even with log-observe connected, while
syslog(2) needs only CAP_SYSLOG (the snap's kernel-module-control grants it; the
base seccomp filter allows the call). It has no sequence numbers: the whole
buffer, oldest first.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

KMSG = "dev/kmsg"
MAX_RECORDS = 100_000
"""Read at most this many records per call: a log flood cannot keep us reading."""
RECORD_SIZE = 8192
SYSLOG_ACTION_READ_ALL = 3
SYSLOG_ACTION_SIZE_BUFFER = 10
MAX_RING_BUFFER = 16 * 1024 * 1024
"""Read at most this much of the ring buffer (CONFIG_LOG_BUF_SHIFT is 17-18 on distributions)."""
SYSLOG_PREFIX = re.compile(r"^<\d+>(?:\[\s*\d+\.\d+\] ?)?")


@dataclass(frozen=True)
class LogRecord:
    seq: int
    priority: int
    """Syslog priority (0 emergency … 7 debug), facility bits removed."""
    text: str


def parse_record(raw: bytes) -> LogRecord | None:
    """One /dev/kmsg record, or None when it does not have the documented shape."""
    header, sep, body = raw.partition(b";")
    if not sep:
        return None
    fields = header.split(b",")
    if len(fields) < 3:
        return None
    try:
        prefix, seq = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    message = body.split(b"\n", 1)[0]
    return LogRecord(seq, prefix & 7, message.decode("utf-8", "replace"))


def read_records(root: Path = Path("/"), *, after: int = -1) -> list[LogRecord]:
    """Records with a sequence number above `after`, oldest first (at most MAX_RECORDS)."""
    records: list[LogRecord] = []
    fd = os.open(root / KMSG, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        while len(records) < MAX_RECORDS:
            try:
                raw = os.read(fd, RECORD_SIZE)
            except OSError as error:
                if error.errno == errno.EPIPE:  # overwritten before we read it
                    continue
                if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                raise
            if not raw:
                break
            record = parse_record(raw)
            if record is not None and record.seq > after:
                records.append(record)
    finally:
        os.close(fd)
    return records


def last_seq(root: Path = Path("/")) -> int:
    """The sequence number of the newest record (-1 when the log is empty)."""
    records = read_records(root)
    return records[-1].seq if records else -1


def boot_id(root: Path = Path("/")) -> str:
    """This boot's random id (changes at every boot, crash or not)."""
    return (root / "proc/sys/kernel/random/boot_id").read_text().strip()


def read_ring_buffer() -> list[str]:
    """The kernel log's messages through syslog(2), oldest first; OSError when refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = libc.klogctl(SYSLOG_ACTION_SIZE_BUFFER, None, 0)
    if size < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), "syslog(2)")
    buffer = ctypes.create_string_buffer(max(1, min(size, MAX_RING_BUFFER)))
    read = libc.klogctl(SYSLOG_ACTION_READ_ALL, buffer, len(buffer))
    if read < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), "syslog(2)")
    return ring_buffer_lines(buffer.raw[:read])


def ring_buffer_lines(raw: bytes) -> list[str]:
    """syslog(2)'s text ("<4>[  721.5] WARNING: ...") as /dev/kmsg's messages."""
    text = raw.decode("utf-8", "replace")
    return [SYSLOG_PREFIX.sub("", line) for line in text.splitlines() if line]
