"""torch.hub entry points: ``torch.hub.load("<owner>/efficientdet", "tf_efficientdet_d0", pretrained=True)``.

Every registered model name is an entry point taking the keyword arguments of
:func:`efficientdet.create_model`.
"""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "timm"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from efficientdet.factory import create_model as _create_model  # noqa: E402
from efficientdet.registry import list_models as _list_models  # noqa: E402


def _entry(name):
    def entry(**kwargs):
        return _create_model(name, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"EfficientDet model {name!r}; keyword arguments as efficientdet.create_model."
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
