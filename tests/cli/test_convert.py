"""``efficientdet convert``: official TF checkpoints reproduce the official detections; effdet files load.

Official fixtures (../shared/reference): a D0 and a Lite0 checkpoint made by google/automl with random
weights, and the official post-processing's detections on a 480 x 640 photo-sized image
(``*-postprocess-native-ema.npz``: rows ``[image_id, ymin, xmin, ymax, xmax, score, class + 1]`` in raw-image
pixels; Gaussian soft-NMS over all anchors, the official default).

Tolerance: the converted networks match TF's raw outputs to ~2e-3 on the logits (TF's float32 reductions,
see tests/weights/test_tf_convert.py). Further down the list, soft-NMS scores of neighbouring detections
come within that noise of each other (Lite0's 94th and 95th differ by 1e-4) and may swap; the top 20 are
clearly separated, so they must agree: same classes, boxes within 1 px, scores within 2e-4. The official
code clips boxes to the padded network input (up to 640 x 640 here), this library to the image (480 x 640):
the reference boxes are clipped to the image before comparing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efficientdet import Predictor, create_model
from efficientdet.cli.main import main
from efficientdet.weights.io import read_metadata
from tests.modeling.effdet_oracle import calibrate_bn, effdet_model, flatten_effdet

FIXTURES = {"d0": ("tf-official", "efficientdet-d0", 1419), "lite0": ("tf-official-lite0", "efficientdet-lite0", 1177)}
TOP = 20


@pytest.mark.parametrize("key", sorted(FIXTURES))
def test_converted_official_checkpoint_gives_the_official_detections(reference_dir, key, tmp_path, capsys):
    folder, ckpt, entries = FIXTURES[key]
    out = tmp_path / f"{key}.safetensors"
    assert main(["convert", "tf", str(reference_dir / folder / ckpt), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"read {entries} TF checkpoint entries" in printed and "EMA weights" in printed and "90 classes" in printed
    assert read_metadata(out)["ema"] == "true"

    model = create_model(out)  # the file carries the official config: anchors, preprocessing, post-processing
    assert (model.config.postprocess.mode, model.config.postprocess.nms) == ("global", "soft")
    image = np.load(reference_dir / folder / f"{key}-inputs.npz")["raw_image_uint8"]
    det = Predictor(model, device="cpu")(image)[0]

    official = torch.from_numpy(np.load(reference_dir / folder / f"{key}-postprocess-native-ema.npz")["detections"][0])
    h, w = image.shape[:2]
    boxes = torch.minimum(official[:, [2, 1, 4, 3]], torch.tensor([w, h, w, h], dtype=official.dtype))
    assert len(det) == len(official) == 100
    assert det.labels[:TOP].tolist() == (official[:TOP, 6].long() - 1).tolist()
    torch.testing.assert_close(det.boxes[:TOP], boxes[:TOP], atol=1.0, rtol=0)
    torch.testing.assert_close(det.scores[:TOP], official[:TOP, 5], atol=2e-4, rtol=0)
    assert det.names[0] == model.config.label_names[int(det.labels[0])]


def test_raw_weights_on_request(reference_dir, tmp_path, capsys):
    folder, ckpt, _ = FIXTURES["lite0"]
    raw = tmp_path / "raw.safetensors"
    assert main(["convert", "tf", str(reference_dir / folder / ckpt), "--output", str(raw), "--no-ema"]) == 0
    assert "raw weights" in capsys.readouterr().out and read_metadata(raw)["ema"] == "false"
    # the raw set reproduces the official raw-weight outputs on the small input
    model = create_model(raw).eval()
    x = torch.from_numpy(np.load(reference_dir / folder / "lite0-inputs.npz")["input_small"]).permute(0, 3, 1, 2)
    out = np.load(reference_dir / folder / "lite0-outputs-small.npz")
    ref = torch.cat([torch.from_numpy(out[f"raw_class_p{lv}"]).reshape(1, -1, 90) for lv in range(3, 8)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x).cls_logits, ref, atol=1e-3, rtol=0)


def test_effdet_checkpoint_converts_with_its_ema_weights(tmp_path, capsys):
    size = (128, 128)
    ema = effdet_model("tf_efficientdet_lite0", size)
    calibrate_bn(ema, size, seed=1)
    raw = effdet_model("tf_efficientdet_lite0", size)
    calibrate_bn(raw, size, seed=2)
    path = tmp_path / "effdet_train.pth"
    torch.save({"epoch": 3, "state_dict": raw.state_dict(), "state_dict_ema": ema.state_dict()}, path)
    out = tmp_path / "lite0.safetensors"
    assert main(["convert", "effdet", str(path), "--model", "tf_efficientdet_lite0", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "EMA weights" in printed and "90 classes" in printed and f"--checkpoint {out}" in printed
    ours = create_model("tf_efficientdet_lite0", checkpoint_path=out).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        c, b = ema.eval()(x)
        o = ours(x)
    torch.testing.assert_close(o.cls_logits, flatten_effdet(c, 90), atol=1e-4, rtol=0)
    torch.testing.assert_close(o.box_deltas, flatten_effdet(b, 4), atol=1e-4, rtol=0)


def test_convert_errors_name_the_problem(tmp_path, capsys):
    missing = tmp_path / "nothing-here"
    assert main(["convert", "tf", str(missing), "--output", str(tmp_path / "x.safetensors")]) == 2
    assert str(missing) in capsys.readouterr().err
    path = tmp_path / "d0.pth"
    torch.save(effdet_model("tf_efficientdet_lite0", (128, 128)).state_dict(), path)
    assert main(["convert", "effdet", str(path), "--model", "tf_efficientdet_d0", "--output",
                 str(tmp_path / "y.safetensors")]) == 2
    assert "of 'tf_efficientdet_d0'" in capsys.readouterr().err
