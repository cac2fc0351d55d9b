"""Image models served from :mod:`tnode.workers` processes (``[models.NAME] workers = N``).

Each worker builds the model from its config once (the U-Net loads its checkpoint; a model with a
``dataset`` builds that dataset too, so ``generate`` runs in the worker) and answers batches of
encoded requests with :func:`answer_batch`, the same pass the in-process batcher runs. Requests
and answers cross the socket as :mod:`.passes` encodes them; a request that fails in a worker
(``unsupported``, a model error) fails alone, with its code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tnode.errors import ConfigError
from tnode.workers import WorkerPool, WorkerSpec, serve_model

from .passes import answer_batch, decode_request, encode_answer

DATASET_TYPES = ("shapes", "digits", "image_files")
"""Dataset types a worker can build for ``generate``."""


def model_pool(node: Any, name: str, model_type: str, config: Any, **overrides: Any) -> WorkerPool | None:
    """A pool serving ``[models.NAME]`` in ``config.workers`` processes; None when it is 0.

    ``overrides`` replace config fields for the workers (e.g. a checkpoint path made absolute here,
    where node.toml's directory is known)."""
    if config.workers < 0:  # the schema's bound; checked here too for configs built in code
        raise ConfigError(f"workers must be 0 or more, got {config.workers}", key_path=f"models.{name}.workers")
    if not config.workers:
        return None
    fields = {**dataclasses.asdict(config), **overrides, "workers": 0}
    spec = WorkerSpec(f"{__name__}:worker_model", {"type": model_type, "config": fields, "dataset": None},
                      env={"OMP_NUM_THREADS": str(getattr(config, "threads", 1))})
    directory = Path(node.data_dir) / "workers" if node is not None else Path(".")
    return WorkerPool(spec, workers=config.workers, name=name, directory=directory,
                      log=node.log if node is not None else None)


def dataset_spec(node: Any, model_name: str, dataset_name: str) -> dict[str, Any]:
    """What a worker needs to build the node's ``[datasets.NAME]`` itself: its type and config, with a
    folder path made absolute. ``ConfigError`` for a dataset type workers cannot build."""
    found = next((c for c in node.component_configs() if c.kind == "dataset" and c.name == dataset_name), None)
    key = f"models.{model_name}.dataset"
    if found is None:
        raise ConfigError(f"[datasets.{dataset_name}] is not configured", key_path=key)
    if found.type not in DATASET_TYPES:
        raise ConfigError(f"a model with workers builds its dataset in each worker; type {found.type!r} of "
                          f"[datasets.{dataset_name}] cannot be (one of {', '.join(DATASET_TYPES)} can)",
                          key_path=key, hint="set workers = 0, or leave dataset empty (no generate)")
    fields = dataclasses.asdict(found.config)
    if found.type == "image_files":
        path = Path(fields["path"]).expanduser()
        fields["path"] = str(path if path.is_absolute() else Path(node.config.base_dir) / path)
    return {"type": found.type, "name": dataset_name, "config": fields}


async def serve_in_workers(model: Any, task_status: Any) -> None:
    """Body of an image model's ``run`` when it has workers: start them, log their memory, serve until
    cancelled (the pool stops its workers on the way out)."""
    pool: WorkerPool = model.pool
    if model.dataset_name:
        pool.spec = dataclasses.replace(pool.spec, config={**pool.spec.config,
                                                           "dataset": dataset_spec(model.node, model.name,
                                                                                   model.dataset_name)})
    await serve_model(pool, name=model.name, log=model.node.log, task_status=task_status)


# --------------------------------------------------------------------------- inside a worker
class WorkerImageModel:
    """An image model as a :class:`tnode.workers.BatchModel`: encoded requests in, one
    :func:`answer_batch` over them, encoded answers (images or error records) out."""

    def __init__(self, model: Any, model_type: str) -> None:
        self.model = model
        self.model_type = model_type

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.model_type}
        inner = getattr(self.model, "model", None)  # the U-Net's torch module
        if inner is not None and hasattr(inner, "parameter_count"):
            out["parameters"] = int(inner.parameter_count())
        return out

    def infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        answers: list[Any] = [None] * len(inputs)
        requests, where = [], []
        for i, data in enumerate(inputs):
            try:
                requests.append(decode_request(data))
                where.append(i)
            except (ValueError, KeyError, TypeError) as exc:
                answers[i] = ValueError(f"bad request: {exc}")
        results, _ = answer_batch(self.model, requests)
        for i, result in zip(where, results, strict=True):
            answers[i] = result
        return [encode_answer(a) for a in answers]


def _build_dataset(spec: Mapping[str, Any]) -> Any:
    from .config import DigitsConfig, ImageFilesConfig, ShapesConfig
    from .datasets import DigitsDataset, ImageFilesDataset, ShapesDataset

    kinds: dict[str, tuple[Any, Any]] = {"shapes": (ShapesDataset, ShapesConfig), "digits": (DigitsDataset, DigitsConfig),
                                         "image_files": (ImageFilesDataset, ImageFilesConfig)}
    cls, schema = kinds[spec["type"]]
    dataset = cls(None, spec["name"], schema(**spec["config"]))
    dataset.build()
    return dataset


def worker_model(spec: Mapping[str, Any]) -> WorkerImageModel:
    """``WorkerSpec.factory`` of image models: build the model ``spec["type"]`` from ``spec["config"]``,
    load it and its dataset (once, in the worker process)."""
    from .config import BlurConfig, ClassicalConfig, ImageGarbageConfig, UNetConfig
    from .models import BlurModel, ClassicalModel, ImageGarbageModel, UNetModel

    kinds: dict[str, tuple[Any, Any]] = {"unet": (UNetModel, UNetConfig), "classical": (ClassicalModel, ClassicalConfig),
                                         "blur": (BlurModel, BlurConfig),
                                         "image_garbage": (ImageGarbageModel, ImageGarbageConfig)}
    kind = spec["type"]
    if kind not in kinds:
        raise ValueError(f"model type {kind!r} cannot run in image workers ({', '.join(kinds)} can)")
    cls, schema = kinds[kind]
    model = cls(None, "worker", schema(**spec["config"]))
    model.load()
    if spec.get("dataset"):
        model.attach_dataset(_build_dataset(spec["dataset"]))
    return WorkerImageModel(model, kind)
