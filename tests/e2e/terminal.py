"""``ipa`` under a pseudo-terminal, as a person runs it: read what it draws, type Ctrl-C.

``Terminal(args)`` starts ``python -m ipa_client.cli ARGS`` with a pty as its
controlling terminal (stdin, stdout and stderr all on it, 120 columns), so
``isatty()`` is true and Ctrl-C written to the pty reaches it as SIGINT, as
from a keyboard.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time

__all__ = ["Terminal"]

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


class Terminal:
    def __init__(self, *args: str, columns: int = 120, cwd: str | None = None) -> None:
        argv = [sys.executable, "-m", "ipa_client.cli", *args]
        env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(columns), LINES="50")
        env.pop("NO_COLOR", None)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: set the window size, then become ipa
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
                if cwd:
                    os.chdir(cwd)
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        self.raw = b""
        self.status: int | None = None

    @property
    def text(self) -> str:
        """Everything drawn so far, without colour and cursor codes."""
        return _ANSI.sub(b"", self.raw).decode("utf-8", errors="replace").replace("\r", "\n")

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False at end of output."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child has closed the terminal
            return False
        self.raw += chunk
        return bool(chunk)

    def expect(self, pattern: str, timeout: float) -> float:
        """Wait until ``pattern`` (a regex) appears in :attr:`text`; return the seconds it took."""
        start = time.monotonic()
        while not re.search(pattern, self.text):
            if time.monotonic() - start > timeout or not self._read(0.1):
                raise AssertionError(f"{pattern!r} did not appear within {timeout} s; screen:\n{self.text}")
        return time.monotonic() - start

    def ctrl_c(self) -> None:
        """Type Ctrl-C (the terminal sends SIGINT to the foreground process group)."""
        os.write(self.fd, b"\x03")

    def wait(self, timeout: float) -> int:
        """Read to the end and return the exit status (kills the child after ``timeout``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self._read(0.1):
            pass
        for _ in range(int(max(end - time.monotonic(), 1) * 20)):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                os.close(self.fd)
                return self.status
            time.sleep(0.05)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"ipa did not exit within {timeout} s; screen:\n{self.text}")
