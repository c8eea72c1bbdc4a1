"""torch.hub entry points of efficientdet, from a clone of the repository (works offline)::

    torch.hub.load("path/to/efficientdet", "tf_efficientdet_d0", source="local", pretrained=True)

Every registered model name is an entry point taking the keyword arguments of
:func:`efficientdet.create_model` (``pretrained=True`` downloads the published weights once).
"""

import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch", "torchvision", "timm"]

_sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))

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
