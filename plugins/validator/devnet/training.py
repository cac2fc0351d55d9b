"""The devnet's transformer checkpoint: reuse one, or train one with ``tnode train`` first."""

from __future__ import annotations

from pathlib import Path

import anyio
from rich.console import Console

from .procs import tnode_command


def default_checkpoint(run_dir: Path, steps: int) -> Path:
    """Where devnets keep the checkpoint they train, shared by every run under the same parent."""
    return run_dir.parent / f"devnet-transformer-{steps}.pt"


async def ensure_checkpoint(run_dir: Path, steps: int, console: Console) -> str:
    """The shared checkpoint for ``steps`` training steps, trained now (``tnode train``) if missing."""
    path = default_checkpoint(run_dir, steps)
    if path.exists():
        console.print(f"transformer checkpoint: {path} (reused)")
        return str(path)
    console.print(f"training the transformer ({steps} steps) → {path}")
    log = run_dir / "train.log"
    partial = path.with_suffix(".partial.pt")
    with open(log, "ab") as out:
        result = await anyio.run_process(
            tnode_command("train", "--checkpoint", str(partial), "--steps", str(steps)),
            stdout=out, stderr=out, check=False)
    if result.returncode != 0 or not partial.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        from .run import DevnetError

        raise DevnetError(f"`tnode train` failed (exit {result.returncode}); see {log}:\n{tail}")
    partial.replace(path)  # only a finished training run becomes the shared checkpoint
    return str(path)
