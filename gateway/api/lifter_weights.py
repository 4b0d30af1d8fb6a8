"""The lifter weights a caller may use (job option ``lifter_weights``): the shipped ones and their own uploads.

A caller's weights live under their own prefix (:mod:`services.common.lifter_weights`), so listing, reading and
using them never reaches another caller's; another caller's name answers exactly as a name that does not exist
(404 here, 422 at job submission). The gateway checks an upload's form (a PyTorch zip checkpoint, a size limit)
and keeps its model card beside it; whether the tensors fit a GAST-Net is checked by the lifter3d stage when a
job uses them (it names the weights and the reason when they do not).
"""
from __future__ import annotations

import asyncio
import io
import zipfile
from typing import Literal

from pydantic import BaseModel, Field

from services.common.lifter_weights import (DEFAULT_NAME, MAX_CARD_BYTES, MAX_WEIGHTS_BYTES, SHIPPED, card_summary,
                                            is_valid_name, name_of_key, user_card_key, user_prefix,
                                            user_weights_key)
from services.common.storage import ObjectNotFound, ObjectStore

from ..jobs.manifest import user_slug
from .upload import UploadRejected


class LifterWeightsView(BaseModel):
    name: str = Field(description="the value of the job option lifter_weights")
    kind: Literal["shipped", "own"] = Field(description="shipped with the service, or uploaded by the caller")
    default: bool = Field(description="what an empty lifter_weights means")
    summary: str = Field(description="the model card's summary")
    size_bytes: int = Field(0, description="size of the stored weights (0 for shipped ones)")
    card: str = Field("", description="the whole model card (Markdown) of the caller's own weights; for shipped "
                                      "ones the card's file in services/lifter3d/weights/")


class LifterWeightsList(BaseModel):
    weights: list[LifterWeightsView]


def shipped_views() -> list[LifterWeightsView]:
    return [LifterWeightsView(name=w.name, kind="shipped", default=w.name == DEFAULT_NAME, summary=w.summary,
                              card=f"services/lifter3d/weights/{w.card}") for w in SHIPPED.values()]


def _own_view(store: ObjectStore, slug: str, name: str, with_card: bool) -> LifterWeightsView:
    size, _ = store.stat(user_weights_key(slug, name))
    try:
        card = store.get_bytes(user_card_key(slug, name)).decode("utf-8", "replace")
    except ObjectNotFound:
        card = ""
    return LifterWeightsView(name=name, kind="own", default=False, size_bytes=size,
                             summary=card_summary(card) or "(no model card)", card=card if with_card else "")


def _list(store: ObjectStore, user: str) -> LifterWeightsList:
    slug = user_slug(user)
    names = sorted(name_of_key(k) for k in store.list_keys(user_prefix(slug)) if k.endswith(".pt"))
    own = []
    for name in names:
        try:
            own.append(_own_view(store, slug, name, with_card=False))
        except ObjectNotFound:  # removed between list and stat
            continue
    return LifterWeightsList(weights=shipped_views() + own)


async def list_lifter_weights(store: ObjectStore, user: str) -> LifterWeightsList:
    """The shipped weights, then the caller's own by name."""
    return await asyncio.to_thread(_list, store, user)


async def lifter_weights_view(store: ObjectStore, user: str, name: str) -> LifterWeightsView | None:
    """One usable weights entry (own ones with their whole card), or None: absent or not the caller's."""
    if name in SHIPPED:
        return next(v for v in shipped_views() if v.name == name)
    if not is_valid_name(name):
        return None
    try:
        return await asyncio.to_thread(_own_view, store, user_slug(user), name, True)
    except ObjectNotFound:
        return None


async def check_lifter_weights(store: ObjectStore, user: str, name: str) -> None:
    """Refuse (422) a job option naming weights the caller cannot use."""
    if not name or name in SHIPPED:
        return
    if not await asyncio.to_thread(store.exists, user_weights_key(user_slug(user), name)):
        offered = ", ".join(SHIPPED)
        raise UploadRejected(422, f"invalid options: lifter_weights {name!r} is neither shipped ({offered}) nor "
                                  f"among your uploaded weights (GET /v1/lifter-weights lists them)", "bad_options")


def check_weights_file(data: bytes) -> None:
    """A PyTorch checkpoint as ``torch.save`` writes it: a zip archive holding a ``data.pkl``."""
    if len(data) > MAX_WEIGHTS_BYTES:
        raise UploadRejected(413, f"weights larger than the limit of {MAX_WEIGHTS_BYTES // (1024 * 1024)} MB",
                             "too_large")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in archive.namelist()):
                raise zipfile.BadZipFile("no data.pkl")
    except zipfile.BadZipFile as exc:
        raise UploadRejected(422, f"the weights file is not a PyTorch checkpoint (torch.save's zip format): {exc}",
                             "bad_weights") from exc


async def own_weights_count(store: ObjectStore, user: str, leaving_out: str = "") -> int:
    """How many weights the caller has stored, not counting ``leaving_out`` (an upload that replaces it)."""
    keys = await asyncio.to_thread(store.list_keys, user_prefix(user_slug(user)))
    return sum(1 for k in keys if k.endswith(".pt") and name_of_key(k) != leaving_out)


async def delete_lifter_weights(store: ObjectStore, user: str, name: str) -> bool:
    """Remove the caller's own weights ``name`` and their card; False when the caller has none of that name.
    Jobs already queued with them fail at the lift, naming the weights that are gone."""
    if not is_valid_name(name) or name in SHIPPED:
        return False
    slug = user_slug(user)

    def remove() -> bool:
        if not store.exists(user_weights_key(slug, name)):
            return False
        store.delete(user_weights_key(slug, name))
        store.delete(user_card_key(slug, name))
        return True
    return await asyncio.to_thread(remove)


async def store_lifter_weights(store: ObjectStore, user: str, name: str, weights: bytes,
                               card: bytes) -> LifterWeightsView:
    """Keep the caller's weights ``name`` (replacing their earlier ones of that name) and the card beside them."""
    if not is_valid_name(name):
        raise UploadRejected(422, "invalid name: lowercase letters, digits, '_' and '-', at most 64 characters, "
                                  "starting with a letter or digit", "bad_name")
    if name in SHIPPED:
        raise UploadRejected(409, f"{name!r} is the name of shipped weights; choose another", "name_taken")
    if len(card) > MAX_CARD_BYTES:
        raise UploadRejected(413, f"model card larger than {MAX_CARD_BYTES // 1024} KiB", "too_large")
    check_weights_file(weights)
    slug = user_slug(user)

    def put() -> LifterWeightsView:
        store.put_bytes(user_card_key(slug, name), card, "text/markdown; charset=utf-8")
        store.put_bytes(user_weights_key(slug, name), weights)
        return _own_view(store, slug, name, with_card=False)
    return await asyncio.to_thread(put)
