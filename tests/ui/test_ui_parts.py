"""The web UI's parts without a server: its folder, its job-duration estimate, its messages and login rules."""

import pytest

from dicetalk.errors import InputError


def test_workspace_sweeps_only_folders_of_servers_that_are_gone(tmp_path):
    from dicetalk.ui.workspace import Workspace

    alive = Workspace(tmp_path)
    gone = tmp_path / "dicetalk-ui-1-gone"  # a server killed mid-job: its lock released, a partial video left
    (gone / "gradio" / "results").mkdir(parents=True)
    (gone / ".lock").touch()
    (gone / "gradio" / "results" / ".dicetalk_0.ab.mp4.tmp.mp4").touch()
    foreign = tmp_path / "dicetalk-ui-2-nolock"
    foreign.mkdir()
    second = Workspace(tmp_path)
    try:
        assert second.removed_stale == [gone] and not gone.exists()
        assert alive.root.exists() and foreign.exists()  # locked by a live server; not ours to judge
    finally:
        second.close()
        alive.close()
    assert not alive.root.exists() and not second.root.exists()


def test_workspace_discards_only_its_own_uploads(tmp_path):
    from dicetalk.ui.workspace import Workspace

    ws = Workspace(tmp_path / "base")
    try:
        upload = ws.gradio / "abc123" / "photo.png"
        upload.parent.mkdir()
        upload.write_bytes(b"x")
        outside = tmp_path / "mine.png"
        outside.write_bytes(b"x")
        ws.discard_upload(outside)
        ws.discard_upload(upload)
        assert outside.exists() and not upload.parent.exists() and ws.results.is_dir()
    finally:
        ws.close()


def test_duration_model_learns_overhead_and_seconds_per_work():
    from dicetalk.ui.jobs import DurationModel

    model = DurationModel()
    assert model.predict(2.0, 10) is None
    model.record(2.0, 10, 11.0)
    assert model.predict(4.0, 10) == pytest.approx(22.0)  # one job: proportional
    for seconds, steps in ((4.0, 10), (8.0, 5)):
        model.record(seconds, steps, 1.0 + 0.5 * seconds * steps)  # 1 s of overhead, 0.5 s per unit
    assert model.predict(6.0, 10) == pytest.approx(31.0)
    assert model.predict(None, 10) == pytest.approx((11.0 + 21.0 + 21.0) / 3)  # unknown length: the mean job