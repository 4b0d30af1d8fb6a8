"""GAST-Net module: shapes, receptive field, causal alignment, official checkpoint compatibility."""
import json
from pathlib import Path

import pytest
import torch

from services.lifter3d.model import BaselineMLP, GASTNet, build_model

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "gastnet_official_keys_128ch_27f.json"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_state_dict_matches_official_128ch_27f():
    expected = json.loads(FIXTURE.read_text())["keys"]
    got = {k: list(v.shape) for k, v in GASTNet(channels=128, filter_widths=(3, 3, 3)).state_dict().items()}
    assert set(got) == set(expected)
    assert got == expected


@pytest.mark.parametrize("widths, rf", [((3, 3, 3), 27), ((3, 3, 3, 3), 81), ((3, 3), 9)])
def test_shapes_and_receptive_field(widths, rf):
    model = GASTNet(channels=8, filter_widths=widths).eval()
    assert model.receptive_field() == rf
    assert model.output_offset() == (rf - 1) // 2
    out = model(torch.randn(2, rf + 4, 17, 2))
    assert out.shape == (2, 5, 17, 3)


def test_outputs_depend_only_on_their_window():
    for causal in (False, True):
        model = GASTNet(channels=8, causal=causal).eval()
        x = torch.randn(1, 40, 17, 2)
        y = model(x)
        x2 = x.clone()
        x2[:, 27:] += 5.0  # frames after output 0's window (frames 0..26)
        assert torch.allclose(model(x2)[:, 0], y[:, 0], atol=1e-5)
        assert not torch.allclose(model(x2)[:, 1], y[:, 1], atol=1e-5)


def test_causal_variant_aligns_output_with_last_frame():
    causal = GASTNet(channels=8, causal=True).eval()
    centred = GASTNet(channels=8, causal=False).eval()
    centred.load_state_dict(causal.state_dict())  # same weights, different residual alignment
    assert causal.total_causal_shift() == 13
    assert causal.output_offset() == 26
    assert centred.output_offset() == 13
    x = torch.randn(1, 27, 17, 2)
    assert causal(x).shape == (1, 1, 17, 3)
    assert not torch.allclose(causal(x), centred(x))


def test_official_format_round_trip_with_other_widths():
    a = GASTNet(channels=16, filter_widths=(3, 3, 3, 3)).eval()
    b = GASTNet(channels=16, filter_widths=(3, 3, 3, 3)).eval()
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    x = torch.randn(1, 81, 17, 2)
    assert torch.allclose(a(x), b(x))


def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError):
        GASTNet(filter_widths=(3, 4))
    with pytest.raises(ValueError):
        GASTNet(channels=30)
    model = GASTNet(channels=8)
    with pytest.raises(ValueError):
        model(torch.randn(1, 10, 17, 2))  # shorter than the receptive field
    with pytest.raises(ValueError):
        model(torch.randn(1, 27, 16, 2))
    with pytest.raises(ValueError):
        build_model({"kind": "transformer"})


def test_baseline_is_per_frame():
    model = BaselineMLP(hidden=32).eval()
    assert model.receptive_field() == 1
    x = torch.randn(2, 5, 17, 2)
    y = model(x)
    assert y.shape == (2, 5, 17, 3)
    x2 = x.clone()
    x2[:, 1:] += 1
    assert torch.allclose(model(x2)[:, 0], y[:, 0])
