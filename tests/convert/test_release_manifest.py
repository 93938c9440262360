"""The full-size (svd-xt) modules, built on meta, hold exactly the names and shapes of the authors' release.

``tests/data/official_state_dict_manifest.json`` is a copy of ``shared/reference/official_state_dict_manifest.json``:
every parameter name and shape of ``unet.pth``, ``pose_guider.pth``, ``audio_linear.pth`` and ``emo_model.pth``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from dicetalk.configs import get_config
from dicetalk.convert.official import RELEASE_FILES, expected_release_shapes

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "official_state_dict_manifest.json"


def test_svd_xt_modules_match_the_release_manifest_exactly():
    manifest = json.loads(MANIFEST.read_text())
    ours = expected_release_shapes("svd-xt")
    assert set(ours) == set(manifest["groups"]) == set(RELEASE_FILES)
    for group, info in manifest["groups"].items():
        assert info["checkpoint_file"] == RELEASE_FILES[group]
        expected = {k: tuple(v) for k, v in info["keys"].items()}
        got = ours[group]
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = sorted(k for k in expected if k in got and got[k] != expected[k])
        assert not missing and not extra and not wrong, (group, missing[:3], extra[:3], wrong[:3])
        assert len(got) == info["num_keys"]
        assert sum(math.prod(s) for s in got.values()) == info["num_params"]
    ip = [k for k in ours["unet"] if "_ip." in k]
    assert len(ip) == manifest["ip_adapter_keys_in_unet"] == 128
    assert sum(math.prod(ours["unet"][k]) for k in ip) == manifest["ip_adapter_params_in_unet"]
    assert all(k.startswith("classifier.") for k in ours["emo_model"] if k.startswith("classifier"))


def test_svd_xt_unet_config_matches_the_release():
    manifest = json.loads(MANIFEST.read_text())
    unet = get_config("svd-xt").unet
    for key, value in manifest["unet_config"].items():
        assert unet[key] == (tuple(value) if isinstance(value, list) else value), key
