"""``tnode image train`` (the U-Net, on CPU, with progress and resume) and ``tnode image eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from tnode.cli_support import fail

console = Console()

DEFAULT_CHECKPOINT = Path("data/models/image-unet.pt")
image_app = typer.Typer(help="The image modality: train and evaluate image models.", no_args_is_help=True)


def register_commands(app: Any) -> None:
    app.add_typer(image_app, name="image")


_fail = fail


def load_dataset(config: Path | None, name: str, size: int) -> Any:
    """``[datasets.NAME]`` of ``config``, or the default: shapes of ``size`` pixels."""
    if config is None:
        from .config import DigitsConfig, ShapesConfig
        from .datasets import DigitsDataset, ShapesDataset

        if name == "digits":
            ds: Any = DigitsDataset(None, "digits", DigitsConfig(size=size))
        elif name in ("", "shapes"):
            ds = ShapesDataset(None, "shapes", ShapesConfig(size=size))
        else:
            raise _fail(f"--dataset {name!r}: without --config only 'shapes' or 'digits'", 2)
        ds.build()
        return ds
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


def _dataset(config: Path | None, dataset: str, size: int) -> Any:
    try:
        return load_dataset(config, dataset, size)
    except typer.Exit:
        raise
    except Exception as exc:  # config errors carry their own clear message
        raise _fail(str(exc), 78) from None


@image_app.command("train")
def train_command(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint to write and resume from.")] = DEFAULT_CHECKPOINT,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Take the dataset from this node.toml.")] = None,
    dataset: Annotated[str, typer.Option(help="[datasets.NAME] in --config, or shapes/digits without it.")] = "",
    size: Annotated[int, typer.Option(min=8, help="Image side without --config.")] = 32,
    steps: Annotated[int, typer.Option(min=1, help="Total optimizer steps (a resumed run continues to this).")] = 2500,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step.")] = 16,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (cosine decay).")] = 3e-3,
    base: Annotated[int, typer.Option(min=4, help="Width of the first U-Net level (new models only).")] = 24,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = 100,
    max_minutes: Annotated[float, typer.Option(min=0.0, help="Stop (and checkpoint) after this long; 0: none.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the training images.")] = 0,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 1,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over even if the checkpoint exists.")] = False,
    export: Annotated[Path | None, typer.Option(help="Also write the model alone here: the file miners load.")] = None,
    init: Annotated[str, typer.Option(help="A new run starts from these weights (a checkpoint, or 'builtin'), "
                                           "with a fresh optimizer and schedule.")] = "",
    task_weights: Annotated[str, typer.Option(help="How often inpaint, denoise and upscale are drawn, "
                                                   "comma-separated.")] = "0.4,0.2,0.4",
    loss: Annotated[str, typer.Option(help="psnr: minus each image's PSNR (what validators reward); l1: mean "
                                           "absolute error, the faster start from random weights.")] = "psnr",
) -> None:
    """Train the image U-Net on CPU on a mixture of inpaint, denoise and upscale tasks, with checkpoints
    and exact resume; then print held-out PSNR/SSIM against the baselines."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .train import TrainSettings, train
    from .unet import UNetShape

    try:
        weights = tuple(float(v) for v in task_weights.split(","))
    except ValueError:
        raise _fail(f"--task-weights {task_weights!r}: three comma-separated numbers (inpaint, denoise, upscale)",
                    2) from None
    start: Path | None = None
    if init:
        from .models import BUILTIN_CHECKPOINT

        start = BUILTIN_CHECKPOINT if init == "builtin" else Path(init)
        if not start.is_file():
            raise _fail(f"--init {init}: no such checkpoint", 2)
    data = _dataset(config, dataset, size)
    settings = TrainSettings(steps=steps, batch_size=batch_size, lr=lr, shape=UNetShape(base), seed=seed,
                             checkpoint_every=checkpoint_every, threads=threads, max_seconds=max_minutes * 60,
                             task_weights=weights, loss=loss)
    if checkpoint.exists() and not fresh:
        console.print(f"resuming from {checkpoint}")
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn(f"{loss} loss {{task.fields[loss]:.4f}}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=steps, loss=float("nan"))
        try:
            result = train(data, checkpoint, settings, resume=not fresh, init=start,
                           progress=lambda p: bar.update(task, completed=p.step, loss=p.loss))
        except ValueError as exc:
            raise _fail(str(exc)) from None
    what = f"PSNR {-result.loss:.2f} dB" if loss == "psnr" else f"L1 {result.loss:.4f}"
    console.print(f"step {result.step}: train {what} in {result.seconds:.0f} s → {result.checkpoint}")
    if export is not None:
        from .train import export as export_model

        export_model(checkpoint, export)
        console.print(f"exported the model to {export}")
    _eval_table(data, checkpoint, threads, per_task=16)


@image_app.command("eval")
def eval_command(
    checkpoint: Annotated[str, typer.Option(help="U-Net checkpoint, or 'builtin'.")] = "builtin",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Take the dataset from this node.toml.")] = None,
    dataset: Annotated[str, typer.Option(help="[datasets.NAME] in --config, or shapes/digits without it.")] = "",
    size: Annotated[int, typer.Option(min=8, help="Image side without --config.")] = 32,
    per_task: Annotated[int, typer.Option(min=1, help="Held-out tasks per restoration task.")] = 32,
    threads: Annotated[int, typer.Option(min=1, help="torch threads.")] = 1,
    grid: Annotated[Path | None, typer.Option(help="Also write a PNG grid of one task each here.")] = None,
) -> None:
    """Print held-out PSNR/SSIM per model (U-Net, classical, blur, garbage) and task."""
    data = _dataset(config, dataset, size)
    _eval_table(data, checkpoint, threads, per_task=per_task, grid=grid)


def baseline_models(checkpoint: Any, threads: int) -> list[tuple[str, Any]]:
    """``(label, model)`` for the U-Net (when a checkpoint is given) and every baseline, best first."""
    from .config import BlurConfig, ClassicalConfig, ImageGarbageConfig, UNetConfig
    from .models import BlurModel, ClassicalModel, ImageGarbageModel, UNetModel

    models: list[tuple[str, Any]] = []
    if checkpoint:
        path = checkpoint if str(checkpoint) == "builtin" else str(Path(checkpoint).resolve())
        unet = UNetModel(None, "unet", UNetConfig(checkpoint=path, threads=threads))
        unet.load()
        models.append((f"unet ({unet.model.parameter_count():,} parameters)", unet))
    models += [("classical", ClassicalModel(None, "classical", ClassicalConfig())),
               ("blur", BlurModel(None, "blur", BlurConfig())),
               ("garbage", ImageGarbageModel(None, "garbage", ImageGarbageConfig()))]
    return models


def _eval_table(data: Any, checkpoint: Any, threads: int, *, per_task: int, grid: Path | None = None) -> None:
    from rich.table import Table

    from .evaluate import eval_tasks, evaluate

    truths = eval_tasks(data, per_task=per_task, seed=1)
    models = baseline_models(checkpoint, threads)
    table = Table(title=f"held-out restoration ({data.name}, {per_task} tasks per task type)")
    for col in ("model", "task", "PSNR dB", "SSIM"):
        table.add_column(col, justify="left" if col in ("model", "task") else "right")
    for label, model in models:
        for row in evaluate(label, model, truths):
            table.add_row(label if row.task == "inpaint" else "", row.task, f"{row.psnr:.2f}", f"{row.ssim:.3f}")
    console.print(table)
    if grid is not None:
        from .pictures import write_grid

        rows = []
        for t in [truths[i * per_task] for i in range(len(truths) // per_task)]:
            assert t.corrupted is not None
            cells = [("original", t.original), ("input", t.corrupted)]
            cells += [(label.split(" ")[0], m.restore(t.corrupted, t.corruption)) for label, m in models]
            rows.append((t.corruption.task, cells))
        console.print(f"wrote {write_grid(grid, rows)}")
