"""Which lifter weights a job may name and how each is found (services/common/lifter_weights.py), the stage's check
of a weights file (services/lifter3d/named_weights.py) and the gateway's check of an upload."""
from __future__ import annotations

import io

import pytest
import torch
from pydantic import ValidationError

from gateway.api.lifter_weights import check_weights_file
from gateway.api.upload import UploadRejected
from gateway.jobs.manifest import JobOptions, user_slug
from services.common.errors import InvalidInput, WeightsMissing
from services.common.lifter_weights import (SHIPPED, card_summary, is_user_weights_key, name_of_key,
                                            stage_weights_spec, user_weights_key)
from services.lifter3d.lift import DEFAULT_WEIGHTS
from services.lifter3d.named_weights import NamedLifters, checked_lifter
from services.lifter3d.video_lift import Lifter


def test_a_job_option_becomes_the_stages_spec():
    slug = user_slug("key:ann")
    assert stage_weights_spec("", slug) == ""
    assert stage_weights_spec("gastnet_2d_only_27f", slug) == "gastnet_2d_only_27f"
    assert stage_weights_spec("dance", slug) == f"lifter-weights/{slug}/dance.pt"
    assert stage_weights_spec("dance", user_slug("")) == "lifter-weights/_/dance.pt"
    assert name_of_key(user_weights_key(slug, "dance")) == "dance"


@pytest.mark.parametrize("key", ["jobs/x/dance.pt", "lifter-weights/../jobs/dance.pt", "lifter-weights/abc/dance.pt",
                                 "lifter-weights/_/Dance.pt", "lifter-weights/_/dance.pt.bak", "lifter-weights/_/.pt"])
def test_the_stage_reads_only_keys_of_stored_weights(key):
    assert not is_user_weights_key(key)


def test_every_shipped_file_exists_with_its_card():
    for w in SHIPPED.values():
        assert (DEFAULT_WEIGHTS.parent / w.file).is_file()
        assert (DEFAULT_WEIGHTS.parent / w.card).is_file()


def test_the_option_refuses_names_that_are_no_names():
    assert JobOptions(lifter_weights="my_weights-2").lifter_weights == "my_weights-2"
    for bad in ("../x", "A", "x" * 65, "a b"):
        with pytest.raises(ValidationError):
            JobOptions(lifter_weights=bad)


def test_card_summary_is_the_first_paragraph_of_text():
    card = "# Adapted lifter: x.pt\n\nMade by `hpe3d adapt`: the lifter\nfine-tuned.\n\n## Adapted on\n\nmore"
    assert card_summary(card) == "Made by `hpe3d adapt`: the lifter fine-tuned."
    assert card_summary("") == ""
    assert card_summary("word " * 200).endswith("...")


def _checkpoint(tmp_path, mutate) -> str:
    ckpt = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    mutate(ckpt)
    path = tmp_path / "w.pt"
    torch.save(ckpt, path)
    return path


def test_checked_lifter_names_the_file_and_the_fault(tmp_path):
    assert checked_lifter(DEFAULT_WEIGHTS, "default") is not None
    wrong_width = _checkpoint(tmp_path, lambda c: c["config"].update(channels=64))
    with pytest.raises(InvalidInput, match="'mine' .*do not fit"):
        checked_lifter(wrong_width, "'mine'")
    with pytest.raises(InvalidInput, match="'mlp' .*a job lifts with GAST-Net"):
        checked_lifter(_checkpoint(tmp_path, lambda c: c["config"].update(kind="baseline")), "'mlp'")
    with pytest.raises(InvalidInput, match="not an hpe3d lifter checkpoint"):
        checked_lifter(_checkpoint(tmp_path, lambda c: c.pop("config")), "'x'")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(InvalidInput, match="not a readable PyTorch checkpoint"):
        checked_lifter(junk, "'junk'")


def test_named_lifters_without_storage(tmp_path):
    default = Lifter(checked_lifter(DEFAULT_WEIGHTS, "default"), DEFAULT_WEIGHTS.name)
    lifters = NamedLifters(store=None, default=default, weights_dir=tmp_path)
    assert lifters.lifter("") is default
    with pytest.raises(WeightsMissing, match="gastnet_2d_only_27f.pt is missing"):
        lifters.lifter("gastnet_2d_only_27f")  # not in this (empty) weights folder
    with pytest.raises(InvalidInput, match="names neither"):
        lifters.lifter("../../etc/passwd")
    shipped = NamedLifters(store=None, default=default)
    two_d = shipped.lifter("gastnet_2d_only_27f")
    assert two_d.name == "gastnet_2d_only_27f.pt" and shipped.lifter("gastnet_2d_only_27f") is two_d  # kept loaded
    assert shipped.lifter("gastnet_bandai_27f") is default


def test_the_gateway_takes_only_torch_checkpoints():
    buffer = io.BytesIO()
    torch.save({"model": {}, "config": {}}, buffer)
    check_weights_file(buffer.getvalue())
    with pytest.raises(UploadRejected) as refused:
        check_weights_file(b"PK\x03\x04 not really a zip")
    assert refused.value.status == 422
