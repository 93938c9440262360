"""The loading path every real-face judge shares (evaluation/real/weights.py)."""

import json

import pytest
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from safetensors.torch import save_file

from dicetalk.errors import DiskFullError, WeightsError
from dicetalk.evaluation.real.weights import WEIGHTS_NAME, convert_judge, load_judge


class TinyJudge(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, width: int = 3):
        super().__init__()
        self.fc = torch.nn.Linear(2, width)


def _build(state, source):
    return TinyJudge(width=state["fc.weight"].shape[0])


def _load(path, **kw):
    return load_judge(path, TinyJudge, "Tiny", _build, **kw)


def test_a_file_and_its_converted_folder_give_the_same_judge(tmp_path):
    state = {"fc.weight": torch.randn(5, 2, dtype=torch.float16), "fc.bias": torch.randn(5, dtype=torch.float16)}
    save_file(state, str(tmp_path / "tiny.safetensors"))
    judge = _load(tmp_path / "tiny.safetensors")
    assert judge.fc.weight.dtype == torch.float32 and not judge.training and not judge.fc.weight.requires_grad
    convert_judge(judge, tmp_path / "folder", {"source": "test"})
    again = _load(tmp_path / "folder")
    assert torch.equal(again.fc.weight, judge.fc.weight) and again.config.width == 5
    assert json.loads((tmp_path / "folder" / "source.json").read_text()) == {"source": "test"}


def test_every_bad_input_is_a_one_line_weights_error(tmp_path):
    judge = TinyJudge()
    convert_judge(judge, tmp_path / "good")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no Tiny here.*; fetch it") as info:
        _load(tmp_path / "empty", folder_hint="; fetch it")
    assert "\n" not in str(info.value)
    with pytest.raises(WeightsError, match=r"no such Tiny weights file \(hint\)"):
        _load(tmp_path / "nothing.pt", file_hint=" (hint)")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        _load(tmp_path / "bad.safetensors")
    config = json.loads((tmp_path / "good" / "config.json").read_text())
    (tmp_path / "good" / "config.json").write_text(json.dumps({**config, "_class_name": "SyncNet"}))
    with pytest.raises(WeightsError, match="holds a 'SyncNet', expected TinyJudge"):
        _load(tmp_path / "good")
    (tmp_path / "good" / "config.json").write_text(json.dumps({**config, "width": "wide"}))
    with pytest.raises(WeightsError, match="unusable config|shape"):
        _load(tmp_path / "good")
    save_file({"fc.weight": torch.zeros(3, 2)}, str(tmp_path / "part.safetensors"))
    with pytest.raises(WeightsError, match="not Tiny weights: 1 missing \\(e.g. 'fc.bias'\\)"):
        _load(tmp_path / "part.safetensors")


def test_a_failed_conversion_leaves_the_earlier_folder_byte_for_byte(tmp_path, monkeypatch):
    convert_judge(TinyJudge(), tmp_path / "judge")
    before = (tmp_path / "judge" / WEIGHTS_NAME).read_bytes()

    def full_disk(self, folder, **kw):
        (folder / WEIGHTS_NAME).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TinyJudge, "save_pretrained", full_disk)
    with pytest.raises(DiskFullError, match="disk full .* the earlier file is untouched"):
        convert_judge(TinyJudge(width=7), tmp_path / "judge")
    assert (tmp_path / "judge" / WEIGHTS_NAME).read_bytes() == before
