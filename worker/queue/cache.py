"""A small LRU of loaded models, so a worker loads a model once and reuses it job after job.

One cache per job slot: an ``Engine`` keeps one IO binding and its input buffers, so two
threads must not run the same ``Model`` at once. With ``--concurrency N`` a model used by
several slots is loaded up to N times, each slot's copy reused for every job that slot runs.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker.models import Model, card_path_for, load_model

__all__ = ["ModelCache"]

log = logging.getLogger(__name__)

#: Path and modification time of the model and its card, the task and the card overrides: a
#: model or card replaced in place (a new version under the same name) is loaded again, not
#: served stale.
Key = tuple[str, int, str | None, int, str | None, str]


def _mtime(path: Path | None) -> int:
    try:
        return path.stat().st_mtime_ns if path is not None else 0
    except OSError:
        return 0  # load_model reports the missing file with its own message


class ModelCache:
    def __init__(
        self,
        size: int,
        *,
        provider: str = "auto",
        threads: int = 0,
        lanes: int = 1,
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: where loaded models' facts are kept (``load_model``)."""
        self.size = size
        self.provider = provider
        self.threads = threads
        self.lanes = lanes
        self.cache_dir = cache_dir
        self.loads = 0
        self._models: OrderedDict[Key, Model] = OrderedDict()

    def get(
        self,
        path: Path,
        *,
        card: Path | None = None,
        task: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        overrides_from: str = "",
    ) -> Model:
        own_card = card if card is not None else card_path_for(path)
        fields = json.dumps(overrides or {}, sort_keys=True)
        key: Key = (str(path), _mtime(path), str(card) if card else None, _mtime(own_card), task,
                    fields)  # fmt: skip
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        model = load_model(
            path,
            card=card,
            overrides=overrides,
            overrides_from=overrides_from,
            task=task,  # type: ignore[arg-type]  # checked by the job schema
            provider=self.provider,
            threads=self.threads,
            lanes=self.lanes,
            cache_dir=self.cache_dir,
        )
        self.loads += 1
        log.info("model %s loaded (%s)", path.name, model.engine.provider)
        self._models[key] = model
        while len(self._models) > self.size:
            old, _ = self._models.popitem(last=False)
            log.info("model %s unloaded (cache holds %d)", Path(old[0]).name, self.size)
        return model
