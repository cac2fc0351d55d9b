"""Running ``tnode`` as a child process in tests, with its stderr collected without blocking."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

TNODE = str(Path(sys.executable).parent / "tnode")


class NodeProcess:
    """A ``tnode run`` child whose stderr is collected by a thread (so reading never blocks)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen([TNODE, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, needle: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not seen; rc={self.proc.poll()} stderr:\n{self.stderr}")

    def finish(self, timeout: float = 20.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return rc

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
