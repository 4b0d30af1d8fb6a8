"""Which lifter weights a job may name (the job option ``lifter_weights``), and where each lives.

Two kinds, one name space:

* **shipped** weights, in the lifter3d stage's ``services/lifter3d/weights/`` folder (:data:`SHIPPED`);
* a user's **own** weights (e.g. written by ``hpe3d adapt`` and uploaded with ``POST /v1/lifter-weights``), stored
  under a per-user prefix: ``lifter-weights/<user slug>/<name>.pt`` with the model card beside it as
  ``<name>.card.md``. Only their owner sees and uses them; a name of a shipped file cannot be taken.

The worker turns a job's option into the string the lifter3d stage reads (``LiftRequest.lifter_weights``,
:func:`stage_weights_spec`): "" for the stage's default, a shipped name, or the object key of the job owner's
weights. The stage accepts nothing else (:func:`is_user_weights_key`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

LIFTER_WEIGHTS_PREFIX = "lifter-weights/"
#: A weights name: lowercase letters, digits, ``_`` and ``-``, at most 64 characters.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
#: ``user_slug`` of :mod:`gateway.jobs.manifest`: 24 hex digits, or ``_`` for the jobs of no one.
_USER_KEY = re.compile(r"^lifter-weights/([0-9a-f]{24}|_)/([a-z0-9][a-z0-9_-]{0,63})\.pt$")
#: Largest weights file accepted for upload (the shipped 27-frame files are about 2 MB; the widest GAST-Net
#: checkpoints about 40 MB).
MAX_WEIGHTS_BYTES = 64 * 1024 * 1024
MAX_CARD_BYTES = 256 * 1024


@dataclass(frozen=True)
class ShippedWeights:
    name: str
    file: str       #: in services/lifter3d/weights/
    card: str       #: the model card beside it
    summary: str


SHIPPED: dict[str, ShippedWeights] = {w.name: w for w in (
    ShippedWeights("gastnet_bandai_27f", "gastnet_bandai_27f.pt", "MODEL_CARD.md",
                   "GAST-Net, 27 frames, trained on the 3D of the Bandai-Namco motion capture; the default"),
    ShippedWeights("gastnet_2d_only_27f", "gastnet_2d_only_27f.pt", "MODEL_CARD_2d_only.md",
                   "GAST-Net, 27 frames, trained from 2D projections alone (no 3D label); its card gives its "
                   "measured error against the default's"),
)}
DEFAULT_NAME = "gastnet_bandai_27f"


def is_valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def user_weights_key(user_slug: str, name: str) -> str:
    """Object key of a user's weights ``name`` (``user_slug``: :func:`gateway.jobs.manifest.user_slug`)."""
    return f"{LIFTER_WEIGHTS_PREFIX}{user_slug}/{name}.pt"


def user_card_key(user_slug: str, name: str) -> str:
    return f"{LIFTER_WEIGHTS_PREFIX}{user_slug}/{name}.card.md"


def user_prefix(user_slug: str) -> str:
    return f"{LIFTER_WEIGHTS_PREFIX}{user_slug}/"


def is_user_weights_key(key: str) -> bool:
    return bool(_USER_KEY.match(key))


def name_of_key(key: str) -> str:
    """``lifter-weights/<slug>/<name>.pt`` -> ``name``."""
    match = _USER_KEY.match(key)
    if not match:
        raise ValueError(f"{key!r} is not the key of stored lifter weights")
    return match.group(2)


def stage_weights_spec(name: str, user_slug: str) -> str:
    """What ``LiftRequest.lifter_weights`` carries for a job's option ``name`` of the user ``user_slug``."""
    if not name:
        return ""
    if name in SHIPPED:
        return name
    return user_weights_key(user_slug, name)


def card_summary(card: str, most: int = 300) -> str:
    """The first paragraph of a model card that is not a heading or a table, on one line."""
    lines: list[str] = []
    for raw in card.splitlines():
        line = raw.strip()
        if not line:
            if lines:
                break
            continue
        if line.startswith(("#", "|", "```")):
            if lines:
                break
            continue
        lines.append(line)
    text = " ".join(lines)
    return text if len(text) <= most else text[: most - 3].rstrip() + "..."
