"""The lifter a ``Lift`` call names (``LiftRequest.lifter_weights``): the stage's default, a shipped file of the
weights folder, or a user's weights stored in S3 (:mod:`services.common.lifter_weights`).

Stored weights are fetched once per object version (the ETag) into a cache folder and kept loaded, the few most
recently used at a time. Each is checked before use: an hpe3d GAST-Net checkpoint (``{"model", "config"}``,
``config["kind"] == "gastnet"``) whose tensors fit the network its config describes, tensors only (no code is
unpickled). Absent weights raise :class:`WeightsMissing` and unusable ones :class:`InvalidInput`, each naming the
weights and their file.
"""
from __future__ import annotations

import hashlib
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from services.common.errors import InvalidInput, WeightsMissing
from services.common.lifter_weights import SHIPPED, is_user_weights_key, name_of_key
from services.common.storage import ObjectNotFound, ObjectStore

from .lift import DEFAULT_WEIGHTS, _safe_load
from .model import GASTNet, build_model
from .video_lift import Lifter

WEIGHTS_DIR = DEFAULT_WEIGHTS.parent
CACHED_MODELS = 4


def checked_lifter(path: Path, label: str) -> torch.nn.Module:
    """The GAST-Net in ``path`` in eval mode, or :class:`InvalidInput` naming ``label`` and saying what is wrong."""
    try:
        ckpt = _safe_load(path, "cpu")
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same answer
        raise InvalidInput(f"lifter weights {label} are not a readable PyTorch checkpoint of tensors: "
                           f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("config"), dict)):
        raise InvalidInput(f"lifter weights {label} are not an hpe3d lifter checkpoint (a dict with 'model' and "
                           f"'config', as training.train, training.train_unsupervised and hpe3d adapt write)")
    config = dict(ckpt["config"])
    if config.get("kind", "gastnet") != "gastnet":
        raise InvalidInput(f"lifter weights {label} hold a {config.get('kind')!r} model; a job lifts with GAST-Net")
    try:
        model = build_model(config)
        assert isinstance(model, GASTNet)
        model.load_state_dict(ckpt["model"], strict=True)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        raise InvalidInput(f"lifter weights {label} do not fit the GAST-Net their config describes "
                           f"({config}): {str(exc)[:300]}") from exc
    return model.eval()


class NamedLifters:
    """``lifter(spec)`` for the value of ``LiftRequest.lifter_weights``; thread-safe."""

    def __init__(self, store: ObjectStore, default: Lifter, weights_dir: Path = WEIGHTS_DIR,
                 cache_dir: Path | None = None, cached_models: int = CACHED_MODELS):
        self.store = store
        self.default = default
        self.weights_dir = weights_dir
        self.cache_dir = cache_dir or Path(tempfile.mkdtemp(prefix="hpe3d-lifter-weights-"))
        self.cached_models = cached_models
        self._models: OrderedDict[tuple[str, str], Lifter] = OrderedDict()
        self._lock = threading.Lock()

    def lifter(self, spec: str) -> Lifter:
        if not spec:
            return self.default
        if spec in SHIPPED:
            return self._shipped(spec)
        if is_user_weights_key(spec):
            return self._stored(spec)
        raise InvalidInput(f"lifter_weights {spec!r} names neither shipped weights ({', '.join(SHIPPED)}) nor "
                           f"stored ones (lifter-weights/<user>/<name>.pt)")

    def _remember(self, cache_key: tuple[str, str], load) -> Lifter:
        with self._lock:
            if cache_key in self._models:
                self._models.move_to_end(cache_key)
                return self._models[cache_key]
        lifter = load()
        with self._lock:
            self._models[cache_key] = lifter
            while len(self._models) > self.cached_models:
                self._models.popitem(last=False)
        return lifter

    def _shipped(self, name: str) -> Lifter:
        shipped = SHIPPED[name]
        path = self.weights_dir / shipped.file
        if path.name == self.default.name:
            return self.default

        def load() -> Lifter:
            if not path.is_file():
                raise WeightsMissing(f"lifter weights {name!r}: {path} is missing from this lifter3d stage "
                                     f"(supply the file, see {self.weights_dir / shipped.card})")
            return Lifter(checked_lifter(path, f"{name!r} ({path})"), shipped.file)
        return self._remember((name, ""), load)

    def _stored(self, key: str) -> Lifter:
        name = name_of_key(key)
        try:
            _, etag = self.store.stat(key)
        except ObjectNotFound as exc:
            raise WeightsMissing(f"lifter weights {name!r} ({key}) are not stored (any more): upload them with "
                                 f"`hpe3d weights upload {name} WEIGHTS.pt` or POST /v1/lifter-weights") from exc

        def load() -> Lifter:
            path = self.cache_dir / (hashlib.sha256(f"{key}\0{etag}".encode()).hexdigest()[:32] + ".pt")
            if not path.exists():
                part = path.with_suffix(".part")
                try:
                    self.store.get_file(key, str(part))
                except ObjectNotFound as exc:
                    raise WeightsMissing(f"lifter weights {name!r} ({key}) were removed while being read") from exc
                part.replace(path)
            return Lifter(checked_lifter(path, f"{name!r} ({key})"), f"{name}.pt")
        return self._remember((key, etag), load)
