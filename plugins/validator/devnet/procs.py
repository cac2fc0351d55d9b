"""Starting and stopping the devnet's node processes.

Each node runs as ``tnode run -c <its node.toml>`` in its own session (so a Ctrl-C in the terminal
reaches only the devnet, which then stops the nodes in order), with its output in a log file.
Stopping sends SIGTERM, waits up to a deadline, then SIGKILLs the process group of what is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TNODE_MAIN = "from tnode.cli import main; main()"


def tnode_command(*args: str) -> list[str]:
    """The command line of ``tnode <args>`` with this interpreter (works without the console script)."""
    return [sys.executable, "-c", TNODE_MAIN, *args]


@dataclass
class Proc:
    """One node process."""

    name: str
    config: Path
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        """The last lines of the process's log (for error reports)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Supervisor:
    """Owns every node process it started; :meth:`stop_all` is safe to call more than once."""

    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, config: Path, log: Path, *, env: dict[str, str] | None = None) -> Proc:
        """Start ``tnode run -c config`` with its output in ``log`` and its process id in ``node.pid`` beside it."""
        proc = self.spawn(name, tnode_command("run", "-c", str(config), "--log-format", "json"), log,
                          cwd=config.parent, env=env, config=config)
        (config.parent / "node.pid").write_text(f"{proc.pid}\n")
        return proc

    def spawn(self, name: str, argv: list[str], log: Path, *, cwd: Path, env: dict[str, str] | None = None,
              config: Path | None = None) -> Proc:
        """Start any command in its own session, output appended to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        proc = Proc(name, config or log, log, popen)
        self.procs.append(proc)
        return proc

    def exited(self) -> list[Proc]:
        """Processes that stopped on their own."""
        return [p for p in self.procs if not p.alive()]

    def stop_all(self, deadline: float = 10.0) -> dict[str, int | None]:
        """SIGTERM every live process (last started first), SIGKILL those alive after ``deadline`` s.

        :returns: exit code per process name.
        """
        for proc in reversed(self.procs):
            if proc.alive():
                _signal(proc, signal.SIGTERM)
        until = time.monotonic() + deadline
        for proc in self.procs:
            remaining = until - time.monotonic()
            try:
                proc.popen.wait(timeout=max(0.0, remaining))
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.popen.wait(timeout=5.0)
        return {p.name: p.popen.returncode for p in self.procs}


def _signal(proc: Proc, signum: int) -> None:
    try:
        proc.popen.send_signal(signum)
    except ProcessLookupError:
        pass


def _kill_group(proc: Proc) -> None:
    # The node runs in its own session, so its process group holds it and any helper it spawned.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
