"""Property-based tests (Hypothesis) of every parser of user text (issue 37).

For any string each parser returns a valid object whose numbers are all finite and in their
documented range, or raises :class:`~dicetalk.errors.InputError`; never another exception. Where a
spec can be written back (a recipe's fields, ``PerformanceOptions.describe``,
``EmotionRequest.describe``, EmotiveTalk settings, a login file) ``parse(write(x)) == x``.

Parsers: ``parse_emotion`` (labels, strengths, mixes, schedules), ``parse_recipe`` /
``parse_field_value``, ``PerformanceOptions.parse``, ``parse_request`` and
``EmotiveTalkSettings.overridden`` (EmotiveTalk), ``parse_auth`` (login options and files).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dicetalk import EMOTIONS  # noqa: E402
from dicetalk.errors import InputError  # noqa: E402
from dicetalk.pipeline.emotion_condition import EmotionSchedule, parse_emotion  # noqa: E402
from dicetalk.pipeline.performance import ATTENTION_BACKENDS, FAST, PerformanceOptions  # noqa: E402
from dicetalk.pipeline.pipeline_emotivetalk import SPEECH_EMOTION_MODES, EmotionRequest, EmotiveTalkSettings, parse_request  # noqa: E402
from dicetalk.pipeline.recipe import FIELD_NAMES, RELEASE, WINDOW_MODES, SamplingRecipe, parse_field_value, parse_recipe  # noqa: E402
from dicetalk.pipeline.schedulers import SCHEDULERS  # noqa: E402
from dicetalk.ui.checks import parse_auth  # noqa: E402

QUICK = settings(max_examples=250, deadline=None)

# ----------------------------------------------------------------------------------- strategies
NUMBER_WORDS = (
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "+inf", "1e309", "-1e309", "1e-400", "-1e-400", "-0", "-0.0", "0", "0.0",
    "1", "2", "3", "3.0", "3.0000001", "0.5", ".5", "5.", "50", "50.0001", "-1", "-0.5", "1e308", "1.7976931348623157e308",
    "1_0", "0x10", "1e3", " 2 ", "", " ", "1,5", "١٢", "9" * 40, "1e", "e1", "--1", "+1",
)  # fmt: skip
numbers = st.one_of(
    st.sampled_from(NUMBER_WORDS),
    st.floats().map(repr),
    st.floats().map(lambda x: f"{x:g}"),
    st.integers(-(10**20), 10**20).map(str),
)
labels = st.one_of(st.sampled_from(EMOTIONS), st.sampled_from(("HAPPY", "Sad", "speech", "unknown", "_x", "1bad", "", " happy", "a-b")))
junk = st.text(max_size=40)
grammar_text = st.text(alphabet="happysadneutral0123456789.eE+-*:, _\n\t", max_size=40)


def join(parts, sep):
    return sep.join(parts)


single = st.one_of(labels, st.builds(lambda name, n: f"{name}:{n}", labels, numbers))
mix = st.lists(st.one_of(labels, st.builds(lambda name, n: f"{name}*{n}", labels, numbers)), min_size=1, max_size=4).map(lambda t: "+".join(t))
schedule = st.lists(st.builds(lambda t, c: f"{t}:{c}", numbers, st.one_of(single, mix)), min_size=1, max_size=4).map(lambda t: ",".join(t))
emotion_specs = st.one_of(junk, grammar_text, single, mix, schedule)


def as_text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ":".join(repr(float(v)) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------------- checks
def assert_finite(value, where="value") -> None:
    """Every number inside ``value`` (dataclasses, tuples, lists, tensors) is finite."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            assert_finite(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            assert_finite(v, f"{where}[{i}]")
    elif isinstance(value, torch.Tensor):
        assert torch.isfinite(value).all(), f"{where} holds non-finite numbers"
    elif isinstance(value, float):
        assert math.isfinite(value), f"{where} = {value!r}"


def parsed(fn, *args):
    """``fn(*args)``, or None where it raises InputError; any other exception fails the test."""
    try:
        return fn(*args)
    except InputError as exc:
        assert str(exc).strip(), "an InputError needs a message"
        return None


# -------------------------------------------------------------------------- emotion conditions
STRENGTHS: list[float] = []


def named(name: str, strength: float) -> torch.Tensor:
    """A fake prior resolver: as the real one, InputError for an unknown emotion."""
    if name not in EMOTIONS:
        raise InputError(f"unknown emotion {name!r}")
    STRENGTHS.append(strength)
    prior = torch.zeros(256)
    prior[EMOTIONS.index(name)] = strength
    return prior


def from_file(path: Path) -> torch.Tensor:
    return torch.zeros(256)


def check_schedule(result: EmotionSchedule) -> None:
    assert isinstance(result, EmotionSchedule) and result.keyframes
    times = [t for t, _ in result.keyframes]
    assert times[0] == 0.0 and all(math.isfinite(t) and t >= 0 for t in times)
    assert all(a < b for a, b in zip(times, times[1:])), times
    for _, prior in result.keyframes:
        assert prior.shape == (256,)
        assert torch.isfinite(prior).all() and prior.min() >= 0 and prior.max() <= 3.0  # strengths 0..3, mixes convex
    frames = result.per_frame(7, 12.5)
    assert frames.shape == (7, 256) and torch.isfinite(frames).all()


@QUICK
@given(emotion_specs)
@example("happy*1e999")
@example("happy*1e308+sad*1e308")
@example("0:neutral,1e999:happy")
@example("1e999:happy")
@example("happy:nan")
@example("happy:1e-400")
@example("happy:-0")
@example("0:neutral,2.5:happy,5:sad:0.5")
def test_parse_emotion_gives_a_finite_schedule_or_an_input_error(spec):
    STRENGTHS.clear()
    result = parsed(parse_emotion, spec, named, from_file)
    if result is not None:
        check_schedule(result)
        assert all(math.isfinite(s) and 0.0 <= s <= 3.0 for s in STRENGTHS), STRENGTHS


@QUICK
@given(st.sampled_from(EMOTIONS), st.floats(0.0, 3.0))
def test_parse_emotion_label_strength_is_the_strength_written(name, strength):
    result = parse_emotion(f"{name}:{strength!r}", named, from_file)
    assert torch.equal(result.keyframes[0][1], named(name, strength))


@QUICK
@given(st.lists(st.tuples(st.sampled_from(EMOTIONS), st.floats(0.0, 1e6)), min_size=1, max_size=4))
def test_parse_emotion_mix_is_the_normalised_weighted_sum(terms):
    total = sum(w for _, w in terms)
    spec = "+".join(f"{n}*{w!r}" for n, w in terms)
    result = parsed(parse_emotion, spec, named, from_file)
    if total <= 0:
        assert result is None
        return
    check_schedule(result)
    expected = sum(w / total * named(n, 1.0) for n, w in terms)
    torch.testing.assert_close(result.keyframes[0][1], expected)


@QUICK
@given(st.lists(st.tuples(st.floats(0.0, 1e6), st.sampled_from(EMOTIONS)), min_size=1, max_size=5))
def test_parse_emotion_schedule_keeps_the_times_written(items):
    spec = ",".join(f"{t!r}:{n}" for t, n in items)
    result = parsed(parse_emotion, spec, named, from_file)
    times = [t for t, _ in items]
    if any(b <= a for a, b in zip(times, times[1:])):
        assert result is None  # times must increase
        return
    check_schedule(result)
    assert [t for t, _ in result.keyframes] == [0.0] + times[1:]


# -------------------------------------------------------------------------------------- recipes
def check_recipe(r: SamplingRecipe) -> None:
    assert isinstance(r, SamplingRecipe)
    assert_finite(r, "recipe")
    assert 1 <= r.steps <= 1000 and r.sampler in SCHEDULERS
    assert all(0.0 <= s <= 50.0 for s in (r.identity_scale, r.emotion_scale, *([r.audio_scale] if r.audio_scale is not None else [])))
    assert 0.0 <= r.guidance_fraction <= 1.0 and 0.0 <= r.noise_aug <= 1.0 and 1.0 <= r.fps <= 60.0
    if r.guidance_interval is not None:
        assert len(r.guidance_interval) == 2 and 0.0 <= r.guidance_interval[0] <= r.guidance_interval[1]
        r.guided_steps([10.0, 5.0, 1.0, 0.0])
    assert r.windows in WINDOW_MODES and r.interpolation in (1, 2)
    assert (r.overlap is None or r.overlap >= 0) and (r.shift is None or r.shift >= 0)
    assert r.time_ids is None or len(r.time_ids) == 3
    assert r.size is None or 16 <= r.size <= 4096
    assert r.decode_chunk >= 1 and isinstance(r.init_from_reference, bool)
    assert r.validated() is r
    r.window_layout(14), r.unet_time_ids(), r.describe()


RECIPE_WORDS = ("none", "null", "true", "false", "yes", "0", "1", "euler", "heun", "dpmpp-2m", "blend", "circular", "release", "model")
recipe_keys = st.one_of(st.sampled_from(sorted(FIELD_NAMES)), st.sampled_from(("guidance-interval", "decode-chunk", "Steps", "bogus", "")))
recipe_values = st.one_of(
    numbers,
    st.sampled_from(RECIPE_WORDS),
    st.lists(numbers, min_size=0, max_size=4).map(lambda t: ":".join(t)),
    st.lists(numbers, min_size=1, max_size=4).map(lambda t: " ".join(t)),
)
recipe_specs = st.one_of(
    junk,
    st.builds(
        lambda head, pairs: ",".join(([head] if head else []) + [f"{k}={v}" for k, v in pairs]),
        st.sampled_from(("", "release", "model", "bogus")),
        st.lists(st.tuples(recipe_keys, recipe_values), max_size=4),
    ),
)


@QUICK
@given(recipe_specs, st.sampled_from((SamplingRecipe(), RELEASE)))
@example("guidance_interval=0.5", SamplingRecipe())
@example("guidance_interval=0:1:2", SamplingRecipe())
@example("guidance_interval=0:1e309", SamplingRecipe())
@example("guidance_interval=:", SamplingRecipe())
@example("time_ids=1:2", SamplingRecipe())
@example("emotion_scale=nan", SamplingRecipe())
@example("audio_scale=inf", SamplingRecipe())
@example("noise_aug=1e-400,fps=-0", SamplingRecipe())
def test_parse_recipe_gives_a_valid_recipe_or_an_input_error(spec, base):
    result = parsed(parse_recipe, spec, base)
    if result is not None:
        check_recipe(result)


@QUICK
@given(st.sampled_from(("int", "int | None", "float", "float | None", "bool", "str", "tuple[float, float] | None")), numbers)
def test_parse_field_value_numbers_are_finite(kind, text):
    value = parsed(parse_field_value, kind, "field", text, "test")
    assert_finite(value)
    if value is not None and kind.startswith("float"):
        assert isinstance(value, float)


valid_recipes = st.builds(
    SamplingRecipe,
    steps=st.integers(1, 1000),
    sampler=st.sampled_from(sorted(SCHEDULERS)),
    identity_scale=st.floats(0.0, 50.0),
    emotion_scale=st.floats(0.0, 50.0),
    audio_scale=st.none() | st.floats(0.0, 50.0),
    guidance_fraction=st.floats(0.0, 1.0),
    guidance_interval=st.none() | st.lists(st.floats(0.0, 1e6), min_size=2, max_size=2).map(lambda v: tuple(sorted(v))),
    windows=st.sampled_from(WINDOW_MODES),
    overlap=st.none() | st.integers(0, 10**6),
    shift=st.none() | st.integers(0, 10**6),
    noise_aug=st.floats(0.0, 1.0),
    fps=st.floats(1.0, 60.0),
    interpolation=st.sampled_from((1, 2)),
    time_ids=st.none() | st.tuples(*[st.floats(allow_nan=False, allow_infinity=False)] * 3),
    init_from_reference=st.booleans(),
    size=st.none() | st.integers(16, 4096),
    decode_chunk=st.integers(1, 10**6),
)


@QUICK
@given(valid_recipes, st.sampled_from((SamplingRecipe(), RELEASE)))
def test_recipe_round_trips_through_its_spec_and_its_dict(recipe, base):
    spec = ",".join(f"{k}={as_text(v)}" for k, v in dataclasses.asdict(recipe).items())
    assert parse_recipe(spec, base) == recipe
    assert SamplingRecipe.from_dict(recipe.to_dict()) == recipe
    assert parse_recipe("release," + spec, base) == recipe


# --------------------------------------------------------------------------- speed switches
PERF_FIELDS = [f.name for f in dataclasses.fields(PerformanceOptions)]
perf_specs = st.one_of(
    junk,
    st.builds(
        lambda head, items: ",".join(([head] if head else []) + items),
        st.sampled_from(("", "fast", "none", "defaults", "slow")),
        st.lists(
            st.one_of(
                st.sampled_from(PERF_FIELDS + ["windows-per-batch", "bogus"]),
                st.builds(
                    lambda k, v: f"{k}={v}",
                    st.sampled_from(PERF_FIELDS + ["bogus"]),
                    st.one_of(numbers, st.sampled_from(ATTENTION_BACKENDS + ("on", "off", "yes", "no", "true", "false", "maybe"))),
                ),
            ),
            max_size=4,
        ),
    ),
)


@QUICK
@given(perf_specs)
@example("windows_per_batch=0")
@example("decode_batch=-1")
@example("windows_per_batch=1e309")
@example("attention=nan")
def test_performance_parse_gives_valid_options_or_an_input_error(spec):
    result = parsed(PerformanceOptions.parse, spec)
    if result is not None:
        assert isinstance(result, PerformanceOptions) and result.validated() is result
        assert result.attention in ATTENTION_BACKENDS
        assert isinstance(result.windows_per_batch, int) and result.windows_per_batch >= 1
        assert isinstance(result.decode_batch, int) and result.decode_batch >= 1
        for f in dataclasses.fields(result):
            if f.type == "bool":
                assert isinstance(getattr(result, f.name), bool)


valid_options = st.builds(
    PerformanceOptions,
    attention=st.sampled_from(ATTENTION_BACKENDS),
    fuse_qkv=st.booleans(),
    channels_last=st.booleans(),
    compile_blocks=st.booleans(),
    compile_vae=st.booleans(),
    compile_backend=st.sampled_from(("inductor", "aot_eager", "eager", "cudagraphs")),
    cuda_graphs=st.booleans(),
    windows_per_batch=st.integers(1, 10**6),
    decode_batch=st.integers(1, 10**6),
    overlap_decode=st.booleans(),
)


@QUICK
@given(valid_options)
@example(PerformanceOptions())
@example(FAST)
def test_performance_options_round_trip_through_describe(options):
    assert PerformanceOptions.parse(options.describe()) == options


# ------------------------------------------------------------------------- EmotiveTalk requests
request_specs = st.one_of(
    junk,
    grammar_text,
    single,
    st.sampled_from(("speech", "SPEECH", " speech ", "", "clip.mp4", "missing/clip.MOV", "happy:", "happy: 0.5", "happy:3e0")),
)


@QUICK
@given(st.one_of(st.none(), request_specs))
@example("happy:nan")
@example("happy:inf")
@example("happy:1e309")
@example("happy:-0")
@example("sad:1e-400")
def test_parse_request_gives_a_valid_request_or_an_input_error(spec):
    result = parsed(parse_request, spec)
    if result is not None:
        assert isinstance(result, EmotionRequest) and result.kind in ("label", "video", "speech")
        assert_finite(result)
        assert 0.0 <= result.strength <= 3.0
        if result.kind == "label":
            assert result.label in EMOTIONS
        if result.kind == "video":
            assert result.video is not None and result.video.is_file()


@QUICK
@given(st.sampled_from(EMOTIONS), st.floats(0.0, 3.0))
def test_emotion_request_round_trips_through_describe(label, strength):
    request = EmotionRequest("label", label=label, strength=strength)
    again = parse_request(request.describe())
    assert (again.kind, again.label) == ("label", label)
    assert again.strength == pytest.approx(strength, rel=1e-5, abs=1e-12)  # describe writes 6 significant digits
    exact = EmotionRequest("label", label=label, strength=round(strength, 4))
    assert parse_request(exact.describe()) == exact
    assert parse_request(EmotionRequest("speech").describe()) == EmotionRequest("speech")


def test_emotion_request_of_a_video_round_trips(tmp_path):
    clip = tmp_path / "reference.mp4"
    clip.write_bytes(b"")
    request = parse_request(str(clip))
    assert request == EmotionRequest("video", video=clip)
    assert parse_request(request.describe()) == request


# ------------------------------------------------------------------------- EmotiveTalk settings
SETTING_FIELDS = [f.name for f in dataclasses.fields(EmotiveTalkSettings)]
setting_specs = st.one_of(
    junk,
    st.lists(
        st.builds(
            lambda k, v: f"{k}={v}",
            st.sampled_from(SETTING_FIELDS + ["bogus", ""]),
            st.one_of(numbers, st.sampled_from(("true", "false", "yes", "no", "read", "generate", "guess", "none"))),
        ),
        max_size=4,
    ).map(lambda t: ",".join(t)),
)


@QUICK
@given(setting_specs)
@example("motion_scale=nan")
@example("label_guidance=inf")
@example("speech_guidance=1e309")
@example("injection_scale=-inf")
@example("speech_strength=nan")
def test_emotivetalk_settings_are_finite_and_in_range_or_an_input_error(spec):
    result = parsed(EmotiveTalkSettings().overridden, spec)
    if result is not None:
        assert_finite(result, "settings")
        assert 0.0 <= result.speech_strength <= 3.0 and result.motion_scale >= 0.0
        assert result.speech_emotion in SPEECH_EMOTION_MODES
        assert isinstance(result.trajectory_steps, int)
        assert isinstance(result.injection, bool) and isinstance(result.anchor, bool)


valid_settings = st.builds(
    EmotiveTalkSettings,
    trajectory_steps=st.integers(1, 1000),
    label_guidance=st.floats(0.0, 1e6),
    speech_guidance=st.floats(0.0, 1e6),
    injection=st.booleans(),
    injection_scale=st.floats(allow_nan=False, allow_infinity=False),
    speech_emotion=st.sampled_from(SPEECH_EMOTION_MODES),
    speech_strength=st.floats(0.0, 3.0),
    anchor=st.booleans(),
    motion_scale=st.floats(0.0, 1e6),
)


@QUICK
@given(valid_settings)
def test_emotivetalk_settings_round_trip_through_their_spec(chosen):
    spec = ",".join(f"{k}={as_text(v)}" for k, v in dataclasses.asdict(chosen).items())
    assert EmotiveTalkSettings().overridden(spec) == chosen


# ------------------------------------------------------------------------------------ logins
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def check_logins(logins) -> None:
    assert isinstance(logins, list)
    for user, password in logins:
        assert isinstance(user, str) and isinstance(password, str)
        assert user and user == user.strip() and password
        assert not any(c in LINE_BREAKS for c in user + password)


@pytest.fixture(scope="module")
def login_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logins")


@QUICK
@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
@example(data=b"\xef\xbb\xbfann:pw\n")
@example(data=b"\xff\xfeann:pw")
@example(data=b"ann:pw\r\n# c\r\n\r\nbob:x:y\r\n")
@example(data=b"")
def test_parse_auth_reads_any_file_as_logins_or_an_input_error(login_dir, data):
    path = login_dir / "logins.txt"
    path.write_bytes(data)
    result = parsed(parse_auth, None, path)
    if result is not None:
        check_logins(result)
        assert result  # a file without a login line is an InputError


@QUICK
@given(st.lists(st.text(max_size=30), max_size=4))
def test_parse_auth_reads_any_options_as_logins_or_an_input_error(pairs):
    result = parsed(parse_auth, pairs, None)
    if result is not None:
        assert len(result) == len(pairs)
        for user, password in result:
            assert user and user == user.strip() and password


_char = st.characters(blacklist_categories=("Cs",), blacklist_characters=LINE_BREAKS + "\ufeff")
users = st.text(_char, min_size=1, max_size=12).filter(lambda u: ":" not in u and u == u.strip() and u and not u.startswith("#"))
passwords = st.text(_char, min_size=1, max_size=12)


@QUICK
@given(
    st.lists(st.tuples(users, passwords), min_size=1, max_size=5),
    st.sampled_from(("\n", "\r\n")),
    st.booleans(),
    st.booleans(),
)
def test_login_file_round_trips(login_dir, logins, newline, bom, comments):
    lines = []
    for user, password in logins:
        if comments:
            lines += ["# a comment", "", "   "]
        lines.append(f"{user}:{password}")
    path = login_dir / "roundtrip.txt"
    path.write_bytes(("\ufeff" if bom else "").encode() + newline.join(lines).encode("utf-8"))
    assert parse_auth(None, path) == logins
    assert parse_auth([f"{u}:{p}" for u, p in logins], None) == logins


# ------------------------------------------------------------------------------- GenerateOptions
option_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12), st.sampled_from(NUMBER_WORDS)
)
OPTION_FIELDS = ("seed", "size", "steps", "identity_scale", "emotion_scale", "fps", "max_seconds", "transition", "windows_per_batch", "device", "model", "sampler", "emotion")


@QUICK
@given(st.dictionaries(st.sampled_from(OPTION_FIELDS), option_values, max_size=4))
@example({"seed": 2**70})
@example({"seed": -1})
@example({"max_seconds": float("nan")})
@example({"fps": float("inf")})
def test_generate_options_are_in_range_or_an_input_error(tmp_path_factory, changes):
    from dicetalk.pipeline.options import SEED_MAX, GenerateOptions

    folder = tmp_path_factory.getbasetemp()
    opts = parsed(lambda: GenerateOptions(image=folder / "p.png", audio=folder / "s.wav", output=folder / "o.mp4", **changes))
    if opts is None:
        return
    assert_finite(opts)
    assert isinstance(opts.seed, int) and 0 <= opts.seed <= SEED_MAX
    assert opts.size is None or (isinstance(opts.size, int) and 16 <= opts.size <= 4096)
    assert 0 < opts.max_seconds <= 86400 and 0 <= opts.transition <= 60 and 1 <= opts.windows_per_batch <= 64
    opts.resolve_recipe(SamplingRecipe())  # the shorthands were checked with the recipe's own rules: no error now
