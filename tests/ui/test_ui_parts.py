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


def test_public_message_hides_server_paths():
    from dicetalk.ui.checks import public_message

    upload = "/tmp/dicetalk-ui-1-x/gradio/5f3e/holiday photo.png"
    assert public_message(InputError(f"{upload}: not a readable image"), {upload: "portrait"}) == "portrait: not a readable image"
    assert public_message("cannot open /srv/models/tiny/unet.safetensors: bad header") == "cannot open a server file: bad header"
    assert public_message("denoising (3/40) at C:\\data\\x.wav\nTraceback ...") == "denoising (3/40) at a server file"


def test_login_options_and_the_host_rule(tmp_path):
    from dicetalk.ui.checks import check_exposure, is_local_host, parse_auth

    assert all(map(is_local_host, ("127.0.0.1", "localhost", "::1", "127.0.1.1")))
    assert not any(map(is_local_host, ("0.0.0.0", "::", "192.168.1.5", "example.org")))
    logins = tmp_path / "logins"
    logins.write_text("# team\nann:pa:ss\n\nbob:x\n")
    assert parse_auth(["eve:1"], logins) == [("eve", "1"), ("ann", "pa:ss"), ("bob", "x")]
    for bad in (["ann"], [":pw"], ["ann:"]):
        with pytest.raises(InputError, match="expected user:password"):
            parse_auth(bad, None)
    with pytest.raises(InputError, match="line 1: expected user:password"):
        (tmp_path / "bad").write_text("ann\n")
        parse_auth(None, tmp_path / "bad")
    check_exposure("127.0.0.1", [], insecure=False)
    check_exposure("0.0.0.0", [("ann", "x")], insecure=False)
    check_exposure("0.0.0.0", [], insecure=True)
    with pytest.raises(InputError, match="--host 0.0.0.0 opens the page to the network"):
        check_exposure("0.0.0.0", [], insecure=False)


def test_running_job_ends_at_its_own_pace_and_paces_the_queue():
    from dicetalk.ui.jobs import JobBoard

    board = JobBoard()
    assert board.remaining_seconds() == 0.0 and board.pace() == 1.0
    board.model.record(2.0, 5, 10.0)
    job = board.start("s", 2.0, 5)
    assert job.predicted == pytest.approx(10.0)
    job.started -= 6.0  # 6 s in, 30 % done: on course for 20 s, twice the prediction
    job.fraction = 0.05
    assert board.remaining_seconds() == pytest.approx(4.0, abs=0.1) and board.pace() == 1.0  # too early to tell
    job.fraction = 0.3
    assert board.remaining_seconds() == pytest.approx(14.0, abs=0.1)
    assert board.pace() == pytest.approx(2.0, rel=0.02)
    board.finish(job, succeeded=True)  # after 6 s: the model now expects (10 + 6) / 2
    assert board.wait_idle(0.0) and board.model.predict(2.0, 5) == pytest.approx(8.0, abs=0.1)
