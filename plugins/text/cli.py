"""`tnode train`: train the byte transformer, or `--eval` to compare it with the baselines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer


def register_commands(app: Any) -> None:
    @app.command()
    def train(
        checkpoint: Annotated[Path, typer.Option(help="Checkpoint to write (and resume from).")] = Path(
            "data/models/byte-transformer.pt"),
        steps: Annotated[int, typer.Option(help="Total optimizer steps (a resumed run continues to this).")] = 2500,
        batch_size: Annotated[int, typer.Option(help="Windows per step.")] = 32,
        lr: Annotated[float, typer.Option(help="Peak learning rate (cosine schedule).")] = 4e-3,
        d_model: Annotated[int, typer.Option(help="Model width (new models only).")] = 128,
        n_layers: Annotated[int, typer.Option(help="Transformer blocks (new models only).")] = 3,
        context: Annotated[int, typer.Option(help="Context length (new models only).")] = 64,
        max_bytes: Annotated[int, typer.Option(help="Size of the python_docs corpus.")] = 4_000_000,
        fresh: Annotated[bool, typer.Option("--fresh", help="Ignore an existing checkpoint.")] = False,
        eval_only: Annotated[bool, typer.Option("--eval", help="Only print held-out cross-entropy of the "
                                                                "checkpoint, the trigram and the uniform model.")] = False,
    ) -> None:
        """Train the byte transformer on the python_docs corpus (CPU), with checkpoints and resume."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from .config import NgramConfig, PythonDocsConfig, UniformConfig
        from .datasets import TokenDataset
        from .models import NgramModel, UniformModel

        console = Console()
        dataset = TokenDataset(None, "docs", PythonDocsConfig(max_bytes=max_bytes))
        dataset.build()
        heldout = dataset.tokens("heldout")
        if not eval_only:
            from .train import train as run_training
            from .transformer import Shape

            with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                          TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), console=console) as bar:
                task = bar.add_task("train", total=steps, loss=float("nan"))
                result = run_training(dataset.tokens("train"), heldout, checkpoint, steps=steps,
                                      batch_size=batch_size, lr=lr, shape=Shape(d_model, n_layers, 4, context),
                                      resume=not fresh,
                                      progress=lambda s, n, loss: bar.update(task, completed=s, loss=loss))
            console.print(f"step {result.step}: held-out loss {result.heldout_loss:.3f} nats/byte "
                          f"(perplexity {math.exp(result.heldout_loss):.2f}) → {result.checkpoint}")
        from .config import TransformerConfig
        from .transformer import TransformerModel, cross_entropy

        rows = []
        if checkpoint.exists():
            model = TransformerModel(None, "t", TransformerConfig(checkpoint=str(checkpoint.resolve())))
            model.load()
            rows.append(("transformer", cross_entropy(model, heldout, windows=256)))
        ngram = NgramModel(None, "n", NgramConfig(dataset="docs", order=3))
        ngram.fit(dataset.tokens("train"))
        rows.append(("trigram", cross_entropy(ngram, heldout, windows=256)))
        rows.append(("uniform", cross_entropy(UniformModel(None, "u", UniformConfig()), heldout, windows=256)))
        from rich.table import Table

        table = Table(title="held-out cross-entropy (python_docs)")
        for col in ("model", "nats/byte", "bits/byte", "perplexity"):
            table.add_column(col)
        for name, nats in rows:
            table.add_row(name, f"{nats:.3f}", f"{nats / math.log(2):.3f}", f"{math.exp(nats):.2f}")
        console.print(table)
