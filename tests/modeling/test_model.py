"""Model behaviour: any input size at run time, class-head reset, configurable parts, errors."""

import math

import pytest
import torch

from efficientdet import create_model
from efficientdet.config import FpnNode, NormConfig, replace_nested
from efficientdet.errors import ConfigError
from efficientdet.modeling.fpn import bifpn_topology, pan_topology, qufpn_topology, resample_to
from efficientdet.registry import get_config
from efficientdet.weights.effdet import convert_effdet_state_dict

from .effdet_oracle import calibrate_bn, effdet_model, flatten_effdet


def tiny_config(**changes):
    """A small test model on timm's test backbone."""
    base = replace_nested(get_config("tf_efficientdet_d0"), backbone__name="test_efficientnet", fpn__channels=16,
                          fpn__repeats=2, head__repeats=2, num_classes=5, label_names=None)
    return replace_nested(base, **changes) if changes else base


def test_one_model_serves_any_input_size_like_effdet_built_for_it():
    """Built once (for 512), the model accepts other sizes; outputs equal effdet models built per size."""
    ours = create_model("tf_efficientdet_d0").eval()
    for size in [(256, 256), (192, 320), (161, 239)]:
        ref = effdet_model("tf_efficientdet_d0", size)
        calibrate_bn(ref, size)
        ours.load_state_dict(convert_effdet_state_dict(ref.state_dict(), ours))
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            c, b = ref(x)
            out = ours(x)
        assert out.cls_logits.shape[1] == ours.anchors(size).shape[0]
        torch.testing.assert_close(out.cls_logits, flatten_effdet(c, 90), atol=1e-4, rtol=0)
        torch.testing.assert_close(out.box_deltas, flatten_effdet(b, 4), atol=1e-4, rtol=0)


def test_anchor_count_follows_input_size():
    model = create_model(tiny_config()).eval()
    for size in [(512, 512), (640, 640), (384, 640), (321, 479)]:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, *size))
        expected = 0
        h, w = size
        for level in range(1, 8):
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
            if level >= 3:
                expected += h * w * 9
        assert out.cls_logits.shape == (1, expected, 5)
        assert out.box_deltas.shape == (1, expected, 4)


def test_forward_changes_nothing():
    model = create_model(tiny_config()).eval()
    x = torch.randn(1, 3, 128, 96)
    x_copy = x.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    config = model.config
    with torch.no_grad():
        a = model(x)
        b = model(x)
    assert torch.equal(x, x_copy) and model.config is config
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(a.cls_logits, b.cls_logits)


def test_new_num_classes_reinitialises_only_the_class_prediction():
    base = create_model(tiny_config())
    with torch.no_grad():
        for p in base.parameters():
            p.add_(torch.randn_like(p))  # pretend these are trained weights
    trained = {k: v.clone() for k, v in base.state_dict().items()}
    base.reset_classes(3, ("a", "b", "c"))
    after = base.state_dict()
    assert base.config.num_classes == 3 and base.config.label_names == ("a", "b", "c")
    for k, v in after.items():
        if k.startswith("class_head.predict."):
            continue
        assert torch.equal(v, trained[k]), k  # backbone, FPN, box head and class-head repeats keep their weights
    bias = base.class_head.predict_bias()
    assert bias.shape == (9 * 3,)
    torch.testing.assert_close(torch.sigmoid(bias), torch.full_like(bias, 0.01))
    out = base.eval()(torch.zeros(1, 3, 64, 64))
    assert out.cls_logits.shape[-1] == 3


def test_class_head_prior_probability_at_init():
    model = create_model(tiny_config()).eval()
    with torch.no_grad():
        probs = torch.sigmoid(model.class_head.predict_bias())
    torch.testing.assert_close(probs, torch.full_like(probs, 0.01))


@pytest.mark.parametrize(
    "changes",
    [
        {"fpn.weight_method": "attn"},
        {"fpn.weight_method": "sum", "fpn.separable_conv": False, "head.separable_conv": False},
        {"fpn.topology": "pan"},
        {"fpn.topology": "qufpn"},
        {"fpn.downsample": "avg", "fpn.upsample": "bilinear"},
        {"fpn.downsample": "bilinear", "fpn.upsample": "bicubic", "fpn.pad_type": ""},
        {"fpn.conv_bn_act": True, "fpn.redundant_bias": False, "fpn.resample_bn": False},
        {"fpn.act": "relu6", "head.act": "hard_swish", "head.norm": NormConfig("groupnorm", groups=4)},
        {"fpn.norm": NormConfig("layernorm", eps=1e-6)},
        {"head.survival_prob": 0.8},
        {"anchors.min_level": 2, "anchors.max_level": 8},
        {"anchors.min_level": 4, "anchors.max_level": 6},
        {"backbone.drop_path_rate": 0.2},
    ],
)
def test_configurable_parts_build_and_train(changes):
    model = create_model(tiny_config(**changes))
    out = model(torch.randn(2, 3, 96, 128))
    assert torch.isfinite(out.cls_logits).all() and torch.isfinite(out.box_deltas).all()
    levels = range(model.config.min_level, model.config.max_level + 1)
    n = sum(math.ceil(96 / 2**lv) * math.ceil(128 / 2**lv) for lv in levels) * 9
    assert out.cls_logits.shape == (2, n, 5)
    (out.cls_logits.mean() + out.box_deltas.mean()).backward()
    assert all(p.grad is not None for n_, p in model.named_parameters() if "backbone" not in n_)


def test_explicit_topology_as_data():
    nodes = (FpnNode(4, (1, 2), "sum"), FpnNode(3, (0, 5), "fastattn"), FpnNode(4, (1, 5, 6), "attn"),
             FpnNode(5, (2, 7), "sum"), FpnNode(6, (3, 8)), FpnNode(7, (4, 9)))
    model = create_model(tiny_config(**{"fpn.nodes": nodes}))
    assert len(model.fpn.cells[0].nodes) == 6
    assert model.eval()(torch.randn(1, 3, 64, 64)).cls_logits.shape[0] == 1
    with pytest.raises(ConfigError, match="levels"):
        create_model(tiny_config(**{"fpn.nodes": nodes[:-1]}))


def test_bifpn_topology_matches_official_d0_table():
    # The node table of ../shared/reference/tf-official/README.md (levels P3..P7, offsets into the list).
    official = [(6, (3, 4)), (5, (2, 5)), (4, (1, 6)), (3, (0, 7)), (4, (1, 7, 8)), (5, (2, 6, 9)),
                (6, (3, 5, 10)), (7, (4, 11))]
    assert [(n.level, n.inputs) for n in bifpn_topology(3, 7)] == official


def test_pan_and_qufpn_topologies_match_effdet():
    from effdet.config.fpn_config import get_fpn_config

    for ours, theirs in [(pan_topology(3, 7), "pan_fa"), (qufpn_topology(3, 7), "qufpn_fa"),
                         (qufpn_topology(2, 6), "qufpn_fa")]:
        lo = min(n.level for n in ours)
        ref = get_fpn_config(theirs, min_level=lo, max_level=lo + 4).nodes
        assert [(n.level, n.inputs, n.weight_method) for n in ours] == [
            (r["feat_level"], tuple(r["inputs_offsets"]), r["weight_method"]) for r in ref
        ]


def test_errors_name_the_problem_and_close_matches():
    with pytest.raises(ConfigError, match="tf_efficientdet_d0"):
        create_model("tf_efficientdet_d00")
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("tf_efficientdet_d0", num_clases=3)
    with pytest.raises(ConfigError, match="channels"):
        create_model("tf_efficientdet_d0", overrides={"fpn.chanels": 3})
    with pytest.raises(ConfigError, match="backbone"):
        create_model(tiny_config(**{"backbone.name": "efficientnet_b99"}))
    with pytest.raises(ConfigError, match="topology"):
        create_model(tiny_config(**{"fpn.topology": "nasfpn"}))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        create_model(tiny_config())(torch.zeros(3, 64, 64))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = create_model(tiny_config(**{"backbone.drop_path_rate": 0.0})).train()
    x = torch.randn(2, 3, 96, 96)

    def grads():
        model.zero_grad()
        out = model(x)
        (out.cls_logits.square().mean() + out.box_deltas.square().mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_grad_checkpointing(True)
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and len(plain) > 50
    for name, g in plain.items():
        torch.testing.assert_close(checkpointed[name], g, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("shape,size", [((5, 7), (10, 14)), ((5, 7), (20, 7)), ((4, 4), (4, 4)), ((5, 7), (9, 13))])
def test_nearest_upsampling_gives_the_pixels_of_interpolating_to_the_size(shape, size):
    """Integer ratios take the constant-scale path (for exported graphs), others the size path: same pixels."""
    x = torch.randn(2, 3, *shape)
    out = resample_to(x, size, None, "nearest")
    assert out.shape[-2:] == size
    assert torch.equal(out, torch.nn.functional.interpolate(x, size=size, mode="nearest"))
