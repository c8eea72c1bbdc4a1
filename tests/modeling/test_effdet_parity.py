"""Every registered model equals effdet 0.4.1's model of the same name: parameters, weights, outputs."""

import pytest
import torch

from efficientdet import create_model
from efficientdet.registry import list_models
from efficientdet.weights.effdet import convert_effdet_state_dict

from .effdet_oracle import calibrate_bn, effdet_model, flatten_effdet

SIZE = (128, 128)
ALL_NAMES = list_models()
# One model per distinct code path (padding, fusion, topology, conv type, activation, backbone indices,
# extra levels); the full sweep over all 47 names runs with ``-m slow``.
FAST_NAMES = {
    "tf_efficientdet_d0", "tf_efficientdet_lite0", "efficientdet_d0", "efficientdet_q1", "cspresdext50pan",
    "cspresdet50", "cspdarkdet53m", "efficientdetv2_dt", "resdet50", "efficientdet_w0", "mobiledetv3_large",
    "efficientdet_es",
}
PARITY_CASES = [n if n in FAST_NAMES else pytest.param(n, marks=pytest.mark.slow) for n in ALL_NAMES]


def test_registry_covers_every_effdet_name():
    from effdet.config.model_config import efficientdet_model_param_dict

    assert len(ALL_NAMES) == 47
    assert sorted(efficientdet_model_param_dict) == ALL_NAMES


@pytest.mark.parametrize("name", PARITY_CASES)
def test_effdet_weights_load_and_outputs_match(name):
    torch.manual_seed(0)
    ref = effdet_model(name, SIZE)
    calibrate_bn(ref, SIZE)
    ours = create_model(name).eval()

    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    ours.load_state_dict(convert_effdet_state_dict(ref.state_dict(), ours))

    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_cls, ref_box = ref(x)
        out = ours(x)
    ref_cls = flatten_effdet(ref_cls, ref.config.num_classes)
    ref_box = flatten_effdet(ref_box, 4)
    assert out.cls_logits.shape == ref_cls.shape and out.box_deltas.shape == ref_box.shape
    assert ref_cls.abs().max() > 0.5  # the comparison is not between near-zero tensors
    torch.testing.assert_close(out.cls_logits, ref_cls, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.box_deltas, ref_box, atol=1e-4, rtol=0)


PARAMS_M = {"tf_efficientdet_d0": 3.88, "tf_efficientdet_d4": 20.7, "tf_efficientdet_lite0": 3.24, "resdet50": 27.6}


@pytest.mark.parametrize("name,millions", sorted(PARAMS_M.items()))
def test_parameter_counts_match_published(name, millions):
    from efficientdet.registry import get_entry

    count = sum(p.numel() for p in create_model(name).parameters()) / 1e6
    assert round(count, 2 if count < 10 else 1) == millions
    assert get_entry(name).params_m == millions
