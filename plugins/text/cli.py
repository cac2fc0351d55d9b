"""``tnode train``: train the byte transformer on CPU, or ``--eval`` it against the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from tnode.cli_support import fail

console = Console()

DEFAULT_CHECKPOINT = Path("data/models/byte-transformer.pt")


def register_commands(app: Any) -> None:
    app.command("train")(train_command)


_fail = fail  # the core's error printer (tnode.cli_support)


def load_dataset(config: Path | None, name: str, data_dir: Path) -> Any:
    """The dataset to train on: ``[datasets.NAME]`` of ``config``, or the default python_docs corpus."""
    if config is None:
        from .config import PythonDocsConfig
        from .datasets import TokenDataset

        dataset = TokenDataset(None, name or "python_docs", PythonDocsConfig(), cache_dir=data_dir / "datasets")
        dataset.build()
        return dataset
    import trio
    from tnode.node import open_node

    async def build() -> Any:
        async with open_node(config, kinds={"dataset"}) as node:
            found = node.components_of("dataset")
            if not found:
                raise _fail(f"{config} has no [datasets.NAME] table", 78)
            if name and name not in found:
                raise _fail(f"{config} has no [datasets.{name}] (it has: {', '.join(found)})", 78)
            return found[name] if name else next(iter(found.values()))

    return trio.run(build)


def train_command(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint to write and resume from.")] = DEFAULT_CHECKPOINT,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Take the dataset from this node.toml "
                                                "(default: the python_docs corpus).")] = None,
    dataset: Annotated[str, typer.Option(help="Name of the [datasets.NAME] table in --config.")] = "",
    data_dir: Annotated[Path, typer.Option(help="Where the default corpus is cached.")] = Path("data"),
    steps: Annotated[int, typer.Option(min=1, help="Total optimizer steps (a resumed run continues to this).")] = 3500,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per step.")] = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (cosine decay to 10%).")] = 4e-3,
    d_model: Annotated[int, typer.Option(min=8, help="Model width (new models only).")] = 128,
    n_layers: Annotated[int, typer.Option(min=1, help="Transformer blocks (new models only).")] = 3,
    n_heads: Annotated[int, typer.Option(min=1, help="Attention heads (new models only).")] = 4,
    context: Annotated[int, typer.Option(min=8, help="Context length in bytes (new models only).")] = 64,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = 100,
    max_minutes: Annotated[float, typer.Option(min=0.0, help="Stop (and checkpoint) after this long; 0: no "
                                                            "limit.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and the training windows.")] = 0,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 2,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over even if the checkpoint exists.")] = False,
    export: Annotated[Path | None, typer.Option(help="Also write the model alone (no optimizer state) here: "
                                                     "the file miners load.")] = None,
    eval_only: Annotated[bool, typer.Option("--eval", help="Do not train: print the held-out cross-entropy "
                                                           "of the checkpoint, n-gram baselines and the "
                                                           "uniform model.")] = False,
    teachers: Annotated[str, typer.Option(help="\"network\": also distil from the subnet's miners, asked "
                                               "through the [teachers.NAME] of --config (see docs/learning.md); "
                                               "\"none\": own data only.")] = "none",
    teachers_name: Annotated[str, typer.Option(help="Name of the teachers table of --config to use (default: the only one).")] = "",
    distill_weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the distillation loss "
                                                                         "(the rest: next-token loss).")] = 0.5,
    teacher_k: Annotated[int, typer.Option(min=1, max=256, help="Log-probabilities asked per position.")] = 32,
    teacher_rps: Annotated[float, typer.Option(min=0.0, help="Most requests per second to teachers (0: no "
                                                             "bound).")] = 20.0,
    teacher_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a teacher request waits.")] = 10.0,
    teacher_cache: Annotated[Path | None, typer.Option(help="SQLite cache of teachers' answers (default: "
                                                            "CHECKPOINT.teachers.sqlite).")] = None,
    show_gating: Annotated[Path | None, typer.Option(help="Print the learned gating of this checkpoint "
                                                          "(weight per teacher) and exit.")] = None,
) -> None:
    """Train the byte transformer on CPU with checkpoints and exact resume, then compare it with the
    n-gram and uniform baselines on held-out data."""
    from .tokenizer import VOCAB_SIZE  # noqa: F401  (fail early if the plugin is broken)

    if show_gating is not None:
        _show_gating(show_gating)
        return
    if teachers not in ("none", "network"):
        raise _fail(f"--teachers must be \"none\" or \"network\", got {teachers!r}", 2)
    if teachers == "network":
        if config is None:
            raise _fail("--teachers network needs --config node.toml with [routers.NAME] and [teachers.NAME] "
                        "tables (see docs/learning.md)", 2)
        if eval_only:
            raise _fail("--teachers network trains: leave out --eval", 2)
        from .network_train import NetworkSettings

        net = NetworkSettings(teachers=teachers_name, k=teacher_k, rps=teacher_rps, timeout=teacher_timeout,
                              alpha=distill_weight, cache=teacher_cache)
        _train_network(config, dataset, checkpoint, net, steps=steps, batch_size=batch_size, lr=lr, d_model=d_model,
                       n_layers=n_layers, n_heads=n_heads, context=context, checkpoint_every=checkpoint_every,
                       max_minutes=max_minutes, seed=seed, threads=threads, fresh=fresh)
        if export is not None:
            from .train import export as export_model

            export_model(checkpoint, export)
            console.print(f"exported the model to {export}")
        _show_gating(checkpoint)
        return
    try:
        data = load_dataset(config, dataset, data_dir)
    except typer.Exit:
        raise
    except Exception as exc:  # config and key errors come with their own clear message
        raise _fail(str(exc), 78) from None
    train_tokens, heldout = data.tokens("train"), data.tokens("heldout")
    console.print(f"dataset {data.name}: {len(train_tokens):,} train and {len(heldout):,} held-out bytes")
    if not eval_only:
        _train(data, checkpoint, steps=steps, batch_size=batch_size, lr=lr, d_model=d_model, n_layers=n_layers,
               n_heads=n_heads, context=context, checkpoint_every=checkpoint_every, max_minutes=max_minutes,
               seed=seed, threads=threads, fresh=fresh)
        if export is not None:
            from .train import export as export_model

            export_model(checkpoint, export)
            console.print(f"exported the model to {export}")
    elif not checkpoint.exists():
        console.print(f"[yellow]no checkpoint at {checkpoint}: showing the baselines only[/]")
    _eval_table(data, checkpoint if checkpoint.exists() else None, threads)


def _train(data: Any, checkpoint: Path, *, steps: int, batch_size: int, lr: float, d_model: int, n_layers: int,
           n_heads: int, context: int, checkpoint_every: int, max_minutes: float, seed: int, threads: int,
           fresh: bool) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .train import TrainSettings, train
    from .transformer import Shape

    if d_model % n_heads:
        raise _fail(f"--d-model {d_model} must be divisible by --n-heads {n_heads}", 2)
    settings = TrainSettings(steps=steps, batch_size=batch_size, lr=lr, shape=Shape(d_model, n_layers, n_heads, context),
                             seed=seed, checkpoint_every=checkpoint_every, threads=threads,
                             max_seconds=max_minutes * 60)
    if checkpoint.exists() and not fresh:
        console.print(f"resuming from {checkpoint}")
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.3f}"),
               TextColumn("held-out {task.fields[held]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=steps, loss=float("nan"), held="-")

        def on_step(p: Any) -> None:
            fields: dict[str, Any] = {"loss": p.loss}
            if p.heldout is not None:
                fields["held"] = f"{p.heldout.nats:.3f} nats ({p.heldout.bits:.3f} bits/byte)"
            bar.update(task, completed=p.step, **fields)

        try:
            result = train(data.tokens("train"), data.tokens("heldout"), checkpoint, settings, resume=not fresh,
                           progress=on_step)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    console.print(f"step {result.step}: held-out {result.heldout.nats:.3f} nats/byte = {result.heldout.bits:.3f} "
                  f"bits/byte (perplexity {result.heldout.perplexity:.2f}); {result.tokens_seen:,} tokens in "
                  f"{result.seconds:.0f} s → {result.checkpoint}")


def _eval_table(data: Any, checkpoint: Path | None, threads: int) -> None:
    from rich.table import Table

    from .config import NgramConfig, UniformConfig
    from .evaluate import cross_entropy, eval_windows
    from .models import NgramModel, UniformModel

    batch = eval_windows(data.tokens("heldout"), windows=256, length=128, seed=1)
    rows: list[tuple[str, Any]] = []
    if checkpoint is not None:
        from .config import TransformerConfig
        from .transformer import TransformerModel

        model = TransformerModel(None, "transformer", TransformerConfig(checkpoint=str(checkpoint.resolve()),
                                                                        threads=threads))
        model.load()
        assert model.model is not None
        rows.append((f"transformer ({model.model.parameter_count():,} parameters)", cross_entropy(model, batch)))
    for order in (3, 5):
        ngram = NgramModel(None, f"{order}-gram", NgramConfig(dataset=data.name, order=order))
        ngram.fit(data.tokens("train"))
        rows.append((f"{order}-gram (Witten-Bell)", cross_entropy(ngram, batch)))
    rows.append(("uniform", cross_entropy(UniformModel(None, "uniform", UniformConfig()), batch)))
    table = Table(title=f"held-out cross-entropy ({data.name}, {batch.shape[0]} windows × {batch.shape[1] - 1} bytes)")
    for col in ("model", "nats/byte", "bits/byte", "perplexity"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, loss in rows:
        table.add_row(name, f"{loss.nats:.3f}", f"{loss.bits:.3f}", f"{loss.perplexity:.2f}")
    console.print(table)


def _settings(*, steps: int, batch_size: int, lr: float, d_model: int, n_layers: int, n_heads: int, context: int,
              checkpoint_every: int, max_minutes: float, seed: int, threads: int) -> Any:
    from .train import TrainSettings
    from .transformer import Shape

    if d_model % n_heads:
        raise _fail(f"--d-model {d_model} must be divisible by --n-heads {n_heads}", 2)
    return TrainSettings(steps=steps, batch_size=batch_size, lr=lr, shape=Shape(d_model, n_layers, n_heads, context),
                         seed=seed, checkpoint_every=checkpoint_every, threads=threads, max_seconds=max_minutes * 60)


def _train_network(config: Path, dataset: str, checkpoint: Path, net: Any, *, fresh: bool, **shape: Any) -> None:
    from tnode.errors import TnodeError

    from .network_train import train_from_network

    settings = _settings(**shape)
    if checkpoint.exists() and not fresh:
        console.print(f"resuming from {checkpoint}")

    def on_step(p: Any) -> None:
        if p.heldout is not None:
            console.print(f"step {p.step}/{p.steps}: loss {p.loss:.3f}, held-out {p.heldout.nats:.3f} nats/byte")

    try:
        done = train_from_network(config, dataset, checkpoint, settings, net, resume=not fresh, progress=on_step)
    except (TnodeError, ValueError) as exc:
        raise _fail(str(exc), 78) from None
    r = done.result
    fails = ", ".join(f"{code} {n}" for code, n in sorted(done.failures.items())) or "none"
    console.print(f"step {r.step}: held-out {r.heldout.nats:.3f} nats/byte = {r.heldout.bits:.3f} bits/byte; "
                  f"{len(done.teachers)} teachers, {done.requests} requests, {done.cache_hits} cached answers, "
                  f"failures: {fails} → {r.checkpoint}")


def _show_gating(checkpoint: Path) -> None:
    from rich.table import Table

    from .distill import gating_rows
    from .transformer import load_checkpoint

    try:
        _, state = load_checkpoint(checkpoint)
        rows = gating_rows(state)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc), 78) from None
    table = Table(title=f"gating of {checkpoint} (step {state.get('step', 0)})")
    for col in ("uid", "hotkey", "mean weight", "context-free", "windows answered"):
        table.add_column(col, justify="left" if col == "hotkey" else "right")
    for row in sorted(rows, key=lambda r: -r["mean_weight"]):
        table.add_row(str(row["uid"]), row["hotkey"][:16], f"{row['mean_weight']:.3f}", f"{row['prior_weight']:.3f}",
                      f"{row['answered']:,}")
    console.print(table)
