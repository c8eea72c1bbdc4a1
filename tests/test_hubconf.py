"""``hubconf.py``: torch.hub loads every model name from a clone, offline, as the README shows."""

import importlib.util
from pathlib import Path

import torch

from efficientdet import list_models

REPO = Path(__file__).resolve().parents[1]


def test_torch_hub_loads_models_from_a_local_clone():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")]
    assert sorted(entries) == sorted(list_models())  # one entry point per model name, nothing else
    model = torch.hub.load(str(REPO), "tf_efficientdet_lite0", source="local", num_classes=3).eval()
    assert model.config.name == "tf_efficientdet_lite0" and model.config.num_classes == 3
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 128, 192))
    assert out.cls_logits.shape == (1, model.anchors((128, 192)).shape[0], 3)
