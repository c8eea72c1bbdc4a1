"""Exported graphs (uint8 images in, padded detections out) equal PyTorch's detections and run on their own.

The reference is the library's PyTorch path on the same letterboxed input: ``normalize`` -> network ->
``postprocess_padded`` (boxes clipped to the input). Each artefact also runs in a fresh interpreter that
cannot import efficientdet (``sys.modules["efficientdet"] = None``): onnxruntime and numpy only for ONNX,
torch and torchvision for ``.pt2`` and TorchScript.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from efficientdet.data.preprocess import normalize
from efficientdet.errors import ConfigError
from efficientdet.export import DetectionGraph, export_config, export_model, read_metadata
from efficientdet.postprocess import postprocess_padded
from efficientdet.predict import Predictor
from tests.predict.helpers import TINY_IDS, TINY_NAMES, TINY_SIZE, photo, tiny_model

PHOTOS = ("coffee.png", "chelsea.png", "astronaut.png")
BLOCK = "import sys\nsys.modules['efficientdet'] = None  # importing it now raises ImportError\n"
SMALL = dict(fpn__repeats=1, head__repeats=1)  # fewer graph nodes: faster exports


def _letterbox(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """``[1, 3, H, W]`` uint8: ``image`` shrunk into ``size`` (H, W), top-left, padded with grey."""
    scale = min(size[0] / image.height, size[1] / image.width)
    resized = np.asarray(image.resize((int(image.width * scale), int(image.height * scale)), Image.BILINEAR))
    canvas = np.full((*size, 3), 127, np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas.transpose(2, 0, 1)[None]


def letterboxed(names=PHOTOS, size=TINY_SIZE) -> np.ndarray:
    """uint8 ``[B, 3, H, W]``: each photo shrunk into the input, top-left, padded."""
    return np.concatenate([_letterbox(Image.open(photo(name)).convert("RGB"), size) for name in names])


def pytorch_detections(model, pixels: np.ndarray, nms: str = "hard"):
    cfg = export_config(model.config, nms=nms)
    x = torch.from_numpy(pixels)
    with torch.no_grad():
        outputs = model(normalize(x, model.config.preprocess.mean, model.config.preprocess.std))
    return postprocess_padded(outputs, model.anchors(TINY_SIZE), cfg, input_size=TINY_SIZE)


def assert_same(got, expected, box_atol: float = 1e-3, score_atol: float = 1e-5) -> None:
    """Same counts and labels; boxes within ``box_atol`` pixels, scores within ``score_atol``."""
    boxes, scores, labels, counts = (torch.as_tensor(np.asarray(a)) for a in got)
    assert counts.tolist() == expected[3].tolist() and min(counts.tolist()) > 0
    assert labels.tolist() == expected[2].tolist()
    torch.testing.assert_close(boxes, expected[0], atol=box_atol, rtol=0)
    torch.testing.assert_close(scores, expected[1], atol=score_atol, rtol=0)


def run_python(code: str, cwd=None) -> str:
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout



@pytest.fixture(scope="module")
def model():
    return tiny_model(**SMALL)


EXPORT_OUTPUT: dict[str, list[str]] = {}
"""What the module's ONNX export printed on stderr and logged through onnx_ir's logger (``onnx_file``)."""


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__()
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def onnx_file(model, tmp_path_factory):
    stderr, logged = io.StringIO(), []
    handler = _Collect(logged)
    logger = logging.getLogger("onnx_ir._convenience")
    logger.addHandler(handler)
    try:
        with contextlib.redirect_stderr(stderr):
            path = export_model(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", "onnx")
        logger.warning("a later onnx_ir message")  # outside the export: not filtered
    finally:
        logger.removeHandler(handler)
    EXPORT_OUTPUT.update(stderr=stderr.getvalue().splitlines(), logged=logged)
    return path


def test_export_shows_progress_and_drops_only_the_onnx_ir_notice(onnx_file):
    """A line before and after an export (with its time); onnx_ir's "Attribute type is ambiguous" notice, which
    the dynamo exporter prints for our graph, is filtered at the export and nowhere else."""
    before, after = EXPORT_OUTPUT["stderr"]
    assert before.startswith("exporting tiny_det to onnx -> ") and str(onnx_file) in before
    assert re.fullmatch(r"exported tiny_det to onnx in \d+\.\d s", after)
    assert EXPORT_OUTPUT["logged"] == ["a later onnx_ir message"]


def test_onnxruntime_equals_pytorch_for_any_batch(model, onnx_file):
    import onnx
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for names in (PHOTOS[:2], PHOTOS, PHOTOS[1:2]):  # dynamic batch
        pixels = letterboxed(names)
        assert_same(session.run(None, {"images": pixels}), pytorch_detections(model, pixels))
    graph = onnx.load(str(onnx_file))
    assert "NonMaxSuppression" in {node.op_type for node in graph.graph.node}  # NMS is inside the graph
    # the pyramid's nearest upsampling has constant scales, not sizes computed from shapes (onnxruntime keeps
    # a constant-scale Resize in its blocked layout; a Resize to sizes costs two layout conversions)
    resizes = [node for node in graph.graph.node if node.op_type == "Resize"]
    assert resizes and all(len(node.input) < 4 or not node.input[3] for node in resizes)
    assert [i.name for i in graph.graph.input] == ["images"]
    assert [o.name for o in graph.graph.output] == ["boxes", "scores", "labels", "num_detections"]
    meta = read_metadata(onnx_file)
    assert meta["label_names"] == list(TINY_NAMES) and meta["image_size"] == list(TINY_SIZE)
    assert meta["category_ids"] == list(TINY_IDS) and Predictor.from_onnx(onnx_file).category_ids == TINY_IDS
    assert meta["mean"] == list(model.config.preprocess.mean) and meta["postprocess"]["nms"] == "hard"


def readme_onnxruntime_snippet() -> str:
    """The README's onnxruntime-only example of the letterboxed-batch graph (the python block of "Export and
    deploy" that runs ``runs/readme_deploy.onnx``)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M)
                if "import onnxruntime as ort" in b and "runs/readme_deploy.onnx" in b]
    return block


README_THRESHOLD = "score > 0.3"
"""The score threshold of the README snippet, as written there."""


def run_readme_onnxruntime_snippet(onnx_file: Path, image: Path, cwd: Path,
                                   threshold: float | None = None) -> list[tuple[str, float, list[float]]]:
    """Run the README snippet as written, in a fresh interpreter that cannot import torch or efficientdet, on
    ``onnx_file`` and ``image`` (placed where it looks for them); returns its ``found`` rows. ``threshold``
    replaces the snippet's 0.3 (for models that score lower)."""
    for link, target in (("runs/readme_deploy.onnx", onnx_file), ("demo_output/data/val/images/000001.jpg", image)):
        (cwd / link).parent.mkdir(parents=True, exist_ok=True)
        (cwd / link).unlink(missing_ok=True)
        os.symlink(Path(target).resolve(), cwd / link)
    snippet = readme_onnxruntime_snippet()
    assert snippet.count(README_THRESHOLD) == 1
    if threshold is not None:
        snippet = snippet.replace(README_THRESHOLD, f"score > {threshold}")
    code = BLOCK + "sys.modules['torch'] = None\n" + snippet + textwrap.dedent("""
        assert not any(m.startswith(('efficientdet', 'torch')) for m in sys.modules if sys.modules[m] is not None)
        print("FOUND", json.dumps([(name, score, box.tolist()) for name, score, box in found]))
        """)
    lines = run_python(code, cwd=cwd).strip().splitlines()
    printed = [line for line in lines if not line.startswith("FOUND ")]
    found = json.loads(lines[-1].removeprefix("FOUND "))
    assert len(printed) == len(found)  # one printed row per detection above the threshold, no padding rows
    return [(name, score, box) for name, score, box in found]


def assert_same_as_predictor(found, expected, threshold: float = 0.3, box_atol: float = 0.5,
                             score_atol: float = 1e-3) -> None:
    """The snippet's rows are ``Predictor``'s detections: each detection pairs with a row of the same label, its
    box within ``box_atol`` pixels and its score within ``score_atol``. Rows whose scores are that close may
    swap places, and a detection within ``score_atol`` of ``threshold`` may be on one side only."""
    rows = [(name, score, np.asarray(box)) for name, score, box in found]
    unmatched = []
    for name, score, box in zip(expected.names, expected.scores.tolist(), expected.boxes.numpy(), strict=True):
        match = next((i for i, (n, s, b) in enumerate(rows) if n == name and abs(s - score) <= score_atol
                      and np.abs(b - box).max() <= box_atol), None)
        if match is None:
            unmatched.append((name, score, box.round(2).tolist()))
        else:
            rows.pop(match)
    assert all(score < threshold + score_atol for _, score, _ in unmatched), unmatched
    assert all(score < threshold + score_atol for _, score, _ in rows), rows


def test_readme_onnxruntime_example_gives_the_predictors_detections(onnx_file, tmp_path):
    """Letterboxed with the model's padding colour and resize, the README example (onnxruntime, numpy and
    Pillow only) finds what ``Predictor`` running the same file finds above its threshold, on a photo larger
    than the input. (The random tiny model turns a 1/255 pixel change into visible score changes, so the
    comparison with PyTorch's float input is made on the demo's trained model: tests/test_readme.py.)"""
    found = run_readme_onnxruntime_snippet(onnx_file, photo("rocket.jpg"), tmp_path)
    expected = Predictor.from_onnx(onnx_file, device="cpu", score_threshold=0.3)(photo("rocket.jpg"))[0]
    assert len(found) == len(expected) > 0
    assert_same_as_predictor(found, expected)
    meta = read_metadata(onnx_file)
    assert meta["pad_value"] == [124, 116, 104] and meta["interpolation"] == "bilinear"  # ImageNet mean x 255


@pytest.mark.slow  # ~15 s: a torch.export, and a fresh interpreter importing torch
def test_pt2_and_torchscript_run_with_torch_alone(model, tmp_path):
    pixels = letterboxed(PHOTOS[:2])
    expected = pytorch_detections(model, pixels)
    pt2 = export_model(model, tmp_path / "tiny.pt2", "pt2")
    script = export_model(model, tmp_path / "tiny.torchscript", "torchscript", batch=2)
    np.save(tmp_path / "x.npy", pixels)
    run_python(BLOCK + textwrap.dedent(f"""
        import numpy as np, torch, torchvision
        x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))
        program = torch.export.load({str(pt2)!r}).module()
        with torch.no_grad():
            a, b, c = program(x), torch.jit.load({str(script)!r})(x), program(x[:1])  # c: another batch size
        np.savez({str(tmp_path / 'out.npz')!r}, *[t.numpy() for t in (*a, *b, *c)])
        assert not any(m.startswith('efficientdet') for m in sys.modules if sys.modules[m] is not None)
    """))
    out = np.load(tmp_path / "out.npz")
    arrays = [out[f"arr_{i}"] for i in range(12)]
    assert_same(arrays[:4], expected)
    assert_same(arrays[4:8], expected)
    assert_same(arrays[8:], [t[:1] for t in expected])
    assert read_metadata(pt2)["label_names"] == list(TINY_NAMES)
    assert read_metadata(script)["image_size"] == list(TINY_SIZE)


@pytest.mark.parametrize("mode", ["topk", "global"])
def test_soft_nms_graph_equals_pytorch(mode):
    """Soft-NMS (the unrolled fixed-shape loop) in a traced graph gives PyTorch's detections."""
    model = tiny_model(postprocess__mode=mode, **SMALL)
    graph = DetectionGraph(model, TINY_SIZE, export_config(model.config, nms="soft")).eval()
    pixels = torch.from_numpy(letterboxed(PHOTOS[:2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, (pixels,), check_trace=False)
    with torch.no_grad():
        assert_same(traced(pixels), pytorch_detections(model, pixels.numpy(), nms="soft"))


def test_torchscript_based_onnx_exporter_in_global_mode(tmp_path):
    """The older exporter (soft-NMS's default) writes the same graph; official global mode needs its stable sort."""
    import onnxruntime as ort

    model = tiny_model(postprocess__mode="global", **SMALL)
    path = export_model(model, tmp_path / "global.onnx", "onnx", exporter="torchscript")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for names in (PHOTOS[:2], PHOTOS):
        pixels = letterboxed(names)
        assert_same(session.run(None, {"images": pixels}), pytorch_detections(model, pixels))
    assert read_metadata(path)["postprocess"]["mode"] == "global"


@pytest.mark.slow  # ~8 s each
@pytest.mark.parametrize("mode", ["topk", "global"])
def test_soft_nms_onnx_equals_pytorch(mode, tmp_path):
    import onnxruntime as ort

    model = tiny_model(postprocess__mode=mode, **SMALL)
    path = export_model(model, tmp_path / "soft.onnx", "onnx", nms="soft")  # auto: the TorchScript-based exporter
    pixels = letterboxed()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert_same(session.run(None, {"images": pixels}), pytorch_detections(model, pixels, nms="soft"))


@pytest.mark.slow  # ~4 minutes: the dynamo exporter on 100 unrolled soft-NMS steps
def test_soft_nms_onnx_with_the_dynamo_exporter(tmp_path):
    import onnxruntime as ort

    model = tiny_model(**SMALL)
    path = export_model(model, tmp_path / "soft.onnx", "onnx", nms="soft", exporter="dynamo")
    pixels = letterboxed(PHOTOS[:2])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert_same(session.run(None, {"images": pixels}), pytorch_detections(model, pixels, nms="soft"))


def test_predictor_runs_onnx_files_like_the_model(model, onnx_file):
    """At the input size there is no resizing, so onnxruntime and PyTorch see the same pixels."""
    images = [np.ascontiguousarray(letterboxed((n,))[0].transpose(1, 2, 0)) for n in PHOTOS[:2]]
    onnx = Predictor.from_onnx(onnx_file, score_threshold=0.3, classes=["dog", "car"], max_detections=20)
    torch_ = Predictor(model, device="cpu", score_threshold=0.3, classes=["dog", "car"], max_detections=20)
    for a, b in zip(onnx(images), torch_(images), strict=True):
        assert len(a) == len(b) > 0 and a.names == b.names
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="re-export with --nms soft"):
        Predictor.from_onnx(onnx_file, nms="soft")
    with pytest.raises(ConfigError, match="at most 100"):
        Predictor(str(onnx_file), max_detections=500)


def test_cpu_backend_runs_a_batch_one_image_at_a_time(onnx_file):
    """One image per session run on the CPU (faster: activations stay in cache), same outputs as one batched run."""
    from efficientdet.predict import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(onnx_file, device="cpu", threads=1)
    assert backend.per_image
    pixels = letterboxed(PHOTOS)
    batched = backend.session.run(None, {"images": pixels})
    sizes = []
    real_run = backend.session.run

    class Recorder:
        def run(self, names, feeds):
            sizes.append(len(feeds["images"]))
            return real_run(names, feeds)

    backend.session = Recorder()
    got = backend.run(pixels)
    assert sizes == [1, 1, 1]
    for a, b in zip(got, batched, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def test_onnxruntime_backend_exports_once_into_the_cache(monkeypatch, tmp_path, capsys):
    """Predictor(backend="onnxruntime") keys the exported file by weights and settings: a second predictor
    with the same model loads it without exporting; a damaged file is exported again. The export says so."""
    import copy
    import shutil

    import efficientdet.export as export_module
    from efficientdet.predict import export_cache_key

    monkeypatch.setenv("EFFICIENTDET_CACHE", str(tmp_path / "cache"))
    model = tiny_model(**SMALL)
    images = [np.ascontiguousarray(letterboxed((n,))[0].transpose(1, 2, 0)) for n in PHOTOS[:2]]
    first = Predictor(model, device="cpu", backend="onnxruntime", score_threshold=0.3)
    folder = tmp_path / "cache" / "onnx"
    cached = list(folder.glob("*.onnx"))
    assert len(cached) == 1 and cached[0].name.startswith(model.config.name)
    assert not list(folder.glob(".*"))  # no temporary file left behind
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("backend='onnxruntime': first run of these weights and settings, exporting tiny_det")
    assert re.fullmatch(r"backend='onnxruntime': ready after \d+\.\d s", err[-1])

    exports = []
    monkeypatch.setattr(export_module, "export_model", lambda *a, **k: exports.append(a) or pytest.fail("exported"))
    second = Predictor(copy.deepcopy(model), device="cpu", backend="onnxruntime", score_threshold=0.3)
    for a, b in zip(first(images), second(images), strict=True):
        assert len(a) > 0 and torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)
    assert capsys.readouterr().err == ""  # loaded from the cache: nothing to wait for

    # other weights or other export settings: another key
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    key = export_cache_key(model, None, None)
    assert key == export_cache_key(copy.deepcopy(model), None, None)
    assert len({key, export_cache_key(other, None, None), export_cache_key(model, "soft", None),
                export_cache_key(model, None, 50)}) == 4
    # edited library code (the exported graph is its output too): another key
    import efficientdet.backends.onnxruntime as onnxruntime_backend

    with monkeypatch.context() as patch:
        patch.setattr(onnxruntime_backend, "_library_source_digest", lambda: "edited sources")
        assert export_cache_key(model, None, None) != key

    # a damaged cached file is exported again (here: the good file copied back by a stand-in exporter)
    good = shutil.copy(cached[0], tmp_path / "good.onnx")
    cached[0].write_bytes(b"not an onnx file")
    monkeypatch.setattr(export_module, "export_model", lambda m, path, *a, **k: exports.append(path) or shutil.copy(good, path))
    again = Predictor(model, device="cpu", backend="onnxruntime", score_threshold=0.3)
    assert len(exports) == 1 and cached[0].read_bytes() == Path(good).read_bytes()
    for a, b in zip(first(images), again(images), strict=True):
        assert torch.equal(a.boxes, b.boxes)


def test_export_errors(model, tmp_path):
    with pytest.raises(ConfigError, match="onnx, torchscript, pt2"):
        export_model(model, tmp_path / "m.mlpackage", "coreml")  # not a format (tflite is one now)
    with pytest.raises(ConfigError, match="opset 16"):
        export_model(model, tmp_path / "m.onnx", "onnx", opset=16)
    with pytest.raises(ConfigError, match="dynamic"):
        export_model(model, tmp_path / "m.pt2", "pt2", batch="many")
    with pytest.raises(ConfigError, match="hard, soft"):
        export_model(model, tmp_path / "m.pt2", "pt2", nms="fast")
    with pytest.raises(ConfigError, match="auto, dynamo, torchscript"):
        export_model(model, tmp_path / "m.onnx", "onnx", exporter="tf2onnx")


@pytest.mark.slow  # ~40 s: the ONNX export of a full-size Lite0
def test_official_lite0_onnx_equals_pytorch(reference_dir, tmp_path):
    """The converted official Lite0 (random weights), hard NMS over all anchors (official ``global`` mode).

    This network is ill-conditioned (see tests/weights/test_tf_convert.py): onnxruntime's and PyTorch's float32
    logits differ by ~1e-4, enough to swap near-tied detections far down the list; the top 20 are separated.
    """
    import onnxruntime as ort

    from efficientdet.modeling.detector import EfficientDet
    from efficientdet.weights.tf_convert import convert_tf_checkpoint

    config, state = convert_tf_checkpoint(reference_dir / "tf-official-lite0" / "efficientdet-lite0")
    model = EfficientDet(config).eval()
    model.load_state_dict(state, strict=False)
    path = export_model(model, tmp_path / "lite0.onnx", "onnx", nms="hard")
    raw = Image.fromarray(np.load(reference_dir / "tf-official-lite0" / "lite0-inputs.npz")["raw_image_uint8"])
    pixels = np.concatenate([_letterbox(raw, (320, 320)), _letterbox(raw.transpose(Image.FLIP_LEFT_RIGHT), (320, 320))])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": pixels})
    cfg = export_config(config, nms="hard")
    with torch.no_grad():
        outputs = model(normalize(torch.from_numpy(pixels), config.preprocess.mean, config.preprocess.std))
    expected = postprocess_padded(outputs, model.anchors((320, 320)), cfg, input_size=(320, 320))
    top = 20
    assert_same([a[:, :top] for a in got[:3]] + [np.minimum(got[3], top)],
                [t[:, :top] for t in expected[:3]] + [expected[3].clamp(max=top)], box_atol=0.1, score_atol=1e-4)
