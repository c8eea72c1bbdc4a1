"""TrainConfig in slices: built from slices or flat settings, checked by each slice, read from flat (old) and
sliced YAML files, flat / dotted ``--set`` keys, and saved-settings dicts of either layout."""

import dataclasses

import pytest

from efficientdet.config import (
    TRAIN_SLICE_OF,
    TRAIN_SLICES,
    AugmentConfig,
    DataConfig,
    OptimConfig,
    RuntimeConfig,
    TrainConfig,
    flat_train_settings,
    train_config_from,
)
from efficientdet.errors import ConfigError


def test_flat_settings_and_slices_build_the_same_config():
    flat = TrainConfig(lr=0.01, train_data="train.json", batch_size=4, amp="bf16", freeze=["backbone"], image_size=96)
    sliced = TrainConfig(optim=OptimConfig(lr=0.01, freeze=("backbone",)),
                         data=DataConfig(train_data="train.json", batch_size=4), runtime=RuntimeConfig(amp="bf16"),
                         image_size=(96, 96))
    assert flat == sliced
    assert flat.optim.lr == flat.lr == 0.01 and flat.data.batch_size == 4 and flat.detector.image_size == (96, 96)
    # flat settings change the slices given; replace() takes flat names
    assert TrainConfig(optim=OptimConfig(epochs=5), lr=0.3).optim == OptimConfig(epochs=5, lr=0.3)
    changed = dataclasses.replace(flat, lr=0.5, hflip=0.0)
    assert (changed.optim.lr, changed.augment.hflip, changed.data) == (0.5, 0.0, flat.data)
    with pytest.raises(AttributeError):
        _ = flat.no_such_setting
    with pytest.raises(ConfigError, match="takes a OptimConfig, got DataConfig"):
        TrainConfig(optim=DataConfig())


def test_every_flat_key_names_one_field_of_one_slice():
    fields = [f.name for cls in TRAIN_SLICES.values() for f in dataclasses.fields(cls)]
    assert len(fields) == len(set(fields)) == len(TRAIN_SLICE_OF)
    assert not set(fields) & set(TRAIN_SLICES)  # a flat key is never also a slice name
    assert TRAIN_SLICE_OF["lr"] == "optim" and TRAIN_SLICE_OF["batch_size"] == "data"


@pytest.mark.parametrize(("build", "message"), [
    (lambda: OptimConfig(epochs=0), "epochs=0: must be >= 1"),
    (lambda: AugmentConfig(scale_min=2.0, scale_max=1.0), "swap them"),
    (lambda: RuntimeConfig(amp="bf61"), r"choose one of none, bf16, fp16 \(did you mean bf16\?\)"),
    (lambda: OptimConfig(clip_mode="nrm"), r"did you mean norm\?"),
    (lambda: TrainConfig(epoch=3), "unknown train setting 'epoch'. Did you mean: epochs"),
    (lambda: TrainConfig(eval_metric="vco"), "Did you mean: voc"),
    (lambda: TrainConfig.from_dict({"optim": {"lrr": 0.1}}), "unknown key in train config.optim 'lrr'. Did you mean: lr"),
])
def test_each_slice_checks_its_values_and_names_the_closest_choice(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_old_flat_files_new_sliced_files_and_dotted_sets_load_alike(tmp_path):
    flat_yaml = tmp_path / "old.yaml"
    flat_yaml.write_text("epochs: 7\nlr: 0.5\nbatch_size: 3\nfreeze: [backbone]\nmodel_overrides: {loss.gamma: 2.0}\n")
    old = train_config_from(str(flat_yaml))
    sliced_yaml = tmp_path / "new.yaml"
    import yaml

    sliced_yaml.write_text(yaml.safe_dump(old.to_dict()))  # what --print-config writes
    assert set(old.to_dict()) == set(TRAIN_SLICES)
    assert train_config_from(str(sliced_yaml)) == old == TrainConfig.from_dict(old.to_dict())
    assert dict(old.model_overrides) == {"loss.gamma": 2.0} and old.optim.freeze == ("backbone",)
    # flat and dotted --set keys win over the file's slices
    cfg = train_config_from(str(sliced_yaml), ["lr=0.01", "optim.epochs=9", "model.loss.alpha=0.3"], batch_size=5)
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.data.batch_size) == (0.01, 9, 5)
    assert dict(cfg.detector.model_overrides) == {"loss.gamma": 2.0, "loss.alpha": 0.3}


def test_saved_settings_of_either_layout_read_flat():
    cfg = TrainConfig(lr=0.01, batch_size=4, seed=3)
    flat = flat_train_settings(cfg.to_dict())
    assert flat["lr"] == 0.01 and flat["batch_size"] == 4 and flat["seed"] == 3 and "optim" not in flat
    assert flat_train_settings(flat) == flat  # an older checkpoint's flat dict stays as it is
    assert TrainConfig.from_dict(flat) == cfg
