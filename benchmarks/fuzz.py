"""Fuzz corpus for the CLI (issue 37): hostile images, audio, videos and option values, every row run
as a subprocess and classified; optionally written as a table into docs/results.md.

Every row must end in either

* ``video``: exit 0, and the output opens with PyAV, has > 0 decodable video frames and an audio track
  (``ok`` for commands that do not write a video: exit 0 and nothing left behind), or
* ``clear error``: non-zero exit, stderr is exactly one non-empty line starting ``error:`` (no traceback).

Anything else is ``BAD``: a traceback, several stderr lines, a hang (timeout), exit 0 without a valid
video, an expected video that came out as an error (or the reverse where an error is the only sane
answer), leftover ``.*.tmp*`` files in the output folder, files left in a failed run's output folder,
or any new file in ``$TMPDIR`` (each command runs with ``TMPDIR`` set to a fresh empty folder).

The corpus is built from ``examples/portrait.png`` and ``examples/speech.wav`` (cut to 1 s) in a temporary
folder that the script removes at the end.

    python benchmarks/fuzz.py                          # every row, 2 workers, table on stdout
    python benchmarks/fuzz.py --quick                  # a handful of rows
    python benchmarks/fuzz.py --write docs/results.md  # also (re)write the fuzz section there
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime as _dt
import io
import os
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import wave
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = ROOT / "examples" / "portrait.png"
SPEECH = ROOT / "examples" / "speech.wav"
BEGIN, END = "<!-- fuzz:begin -->", "<!-- fuzz:end -->"
FAST = ["--no-crop", "--steps", "2"]  # every generate row: no face detection, 2 denoising steps


# ----------------------------------------------------------------------------------------------- corpus


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _huge_png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    i = data.find(b"\xff\xc0")
    if i < 0:
        i = data.find(b"\xff\xc2")
    b = bytearray(data)
    b[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(b)


def _write_wav(path: Path, frames: np.ndarray, rate: int, width: int) -> None:
    """frames: (n, channels) int16-range floats or ints, written at `width` bytes per sample (PCM)."""
    frames = np.asarray(frames)
    if frames.ndim == 1:
        frames = frames[:, None]
    x = frames.astype(np.int64)
    if width == 1:
        raw = (np.clip(x >> 8, -128, 127) + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    elif width == 3:
        v = (np.clip(x, -32768, 32767) << 8).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        raw = v.tobytes()
    else:
        raw = (np.clip(x, -32768, 32767) << 16).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def _write_float_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    data = np.asarray(samples, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def _write_mp4(path: Path, audio: np.ndarray | None, rate: int = 16000, frames: int = 25) -> None:
    import av

    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        as_ = None
        if audio is not None:
            as_ = out.add_stream("aac", rate=rate)
            as_.layout = "mono"
        for k in range(frames):
            img = np.full((64, 64, 3), (k * 9) % 255, np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if as_ is not None:
            x = (audio.astype(np.float32) / 32768.0).reshape(1, -1)
            pts = 0
            for s in range(0, x.shape[1], 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, s : s + 1024]), format="fltp", layout="mono")
                fr.sample_rate = rate
                fr.pts = pts
                pts += fr.samples
                for p in as_.encode(fr):
                    out.mux(p)
            for p in as_.encode():
                out.mux(p)


def _write_audio_codec(path: Path, audio: np.ndarray, codec: str, rate: int = 16000) -> None:
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream(codec, rate=rate if codec not in ("libopus", "opus") else 48000)
        st.layout = "mono"
        x = audio.astype(np.float32) / 32768.0
        if codec in ("libopus", "opus"):
            x = np.interp(np.arange(len(x) * 3) / 3.0, np.arange(len(x)), x).astype(np.float32)
        fmt = st.codec_context.format.name if st.codec_context.format else "fltp"
        rs = av.AudioResampler(format=fmt, layout="mono", rate=st.codec_context.sample_rate)
        fr = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="fltp", layout="mono")
        fr.sample_rate = rate if codec not in ("libopus", "opus") else 48000
        for f in rs.resample(fr) + rs.resample(None):
            for p in st.encode(f):
                out.mux(p)
        for p in st.encode():
            out.mux(p)


def build_corpus(c: Path) -> dict[str, str]:
    """Write every input file into `c`; returns names of inputs that could not be made (-> reason)."""
    skipped: dict[str, str] = {}
    portrait = Image.open(PORTRAIT).convert("RGB")
    (c / "portrait.png").write_bytes(PORTRAIT.read_bytes())
    png = PORTRAIT.read_bytes()
    jpg = _jpeg_bytes(portrait)
    (c / "portrait.jpg").write_bytes(jpg)
    (c / "truncated.png").write_bytes(png[: len(png) // 2])
    (c / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (c / "empty.png").write_bytes(b"")
    portrait.resize((1, 1)).save(c / "1x1.png")
    portrait.resize((8, 8)).save(c / "8x8.png")
    portrait.resize((2000, 16)).save(c / "2000x16.png")
    portrait.resize((6000, 4000)).save(c / "6000x4000.jpg", quality=80)
    (c / "huge_header.png").write_bytes(_huge_png(100000, 100000))
    (c / "huge_header_12000.jpg").write_bytes(_patch_jpeg_size(jpg, 12000, 12000))
    (c / "jpeg_named.png").write_bytes(jpg)
    (c / "png_named.jpg").write_bytes(png)
    (c / "text.png").write_text("this is not an image\n")
    (c / "folder.png").mkdir()
    # How a camera stores a picture for each EXIF orientation: the viewer's turn (exif_transpose) undone.
    stored_as = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}  # fmt: skip
    for k in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = k
        pixels = portrait.transpose(stored_as[k]) if k in stored_as else portrait
        (c / f"exif{k}.jpg").write_bytes(_jpeg_bytes(pixels, exif=exif.tobytes()))
    portrait.convert("L").save(c / "gray.png")
    portrait.convert("LA").save(c / "gray_alpha.png")
    portrait.convert("1").save(c / "bilevel.png")
    portrait.convert("RGBA").save(c / "rgba.png")
    clear = portrait.convert("RGBA")
    clear.putalpha(0)
    clear.save(c / "rgba_transparent.png")
    portrait.convert("P", palette=Image.ADAPTIVE).save(c / "palette.png")
    portrait.convert("CMYK").save(c / "cmyk.jpg")
    g16 = (np.asarray(portrait.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(g16).save(c / "gray16.png")
    Image.fromarray(np.asarray(portrait.convert("L"), np.float32) / 255.0).save(c / "float.tiff")
    frames = [portrait.rotate(a) for a in (0, 10, 20)]
    frames[0].save(c / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    try:
        portrait.save(c / "portrait.webp")
    except Exception as exc:  # no WebP support in this Pillow
        skipped["portrait.webp"] = str(exc)

    with wave.open(str(SPEECH)) as r:
        rate, width, ch = r.getframerate(), r.getsampwidth(), r.getnchannels()
        full = np.frombuffer(r.readframes(r.getnframes()), dtype="<i2").reshape(-1, ch)[:, 0].astype(np.int64)
    assert width == 2
    s = full[:rate]  # 1 s
    _write_wav(c / "speech1s.wav", s, rate, 2)
    _write_wav(c / "speech_full.wav", full, rate, 2)
    _write_wav(c / "8bit.wav", s, rate, 1)
    _write_wav(c / "24bit.wav", s, rate, 3)
    _write_wav(c / "32bit.wav", s, rate, 4)
    _write_float_wav(c / "float32.wav", s / 32768.0, rate)
    bad = (s / 32768.0).astype(np.float32)
    bad[::100] = np.nan
    bad[50::100] = np.inf
    _write_float_wav(c / "float32_nan.wav", bad, rate)
    hi = np.interp(np.arange(96000) / 96000.0 * rate, np.arange(len(s)), s)
    _write_wav(c / "96k.wav", hi, 96000, 2)
    lo = np.interp(np.arange(8000) / 8000.0 * rate, np.arange(len(s)), s)
    _write_wav(c / "8k.wav", lo, 8000, 2)
    _write_wav(c / "stereo.wav", np.stack([s, s // 2], 1), rate, 2)
    _write_wav(c / "stereo_antiphase.wav", np.stack([s, -s], 1), rate, 2)  # a mono downmix is silent
    _write_wav(c / "6ch.wav", np.stack([s * (k + 1) / 6 for k in range(6)], 1), rate, 2)
    _write_wav(c / "zero_length.wav", np.zeros((0, 1)), rate, 2)
    _write_wav(c / "10ms.wav", s[: rate // 100], rate, 2)
    _write_wav(c / "silent.wav", np.zeros(rate), rate, 2)
    whole = (c / "speech1s.wav").read_bytes()
    (c / "truncated.wav").write_bytes(whole[: int(len(whole) * 0.6)])
    (c / "header_only.wav").write_bytes(whole[:30])
    (c / "empty.wav").write_bytes(b"")
    (c / "text.wav").write_text("this is not audio\n" * 10)
    (c / "wav_named.mp3").write_bytes(whole)
    (c / "folder.wav").mkdir()
    for name, codec in (("speech.flac", "flac"), ("speech.mp3", "libmp3lame"), ("speech.ogg", "libopus"), ("speech.m4a", "aac")):
        try:
            _write_audio_codec(c / name, s, codec)
        except Exception as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
    try:
        _write_mp4(c / "video_noaudio.mp4", None)
        _write_mp4(c / "video_audio.mp4", s)
    except Exception as exc:
        skipped["video_noaudio.mp4"] = skipped["video_audio.mp4"] = f"{type(exc).__name__}: {exc}"
    (c / "empty.mp4").write_bytes(b"")
    (c / "text.mp4").write_text("this is not a video\n")
    (c / "text.npy").write_text("not a prior\n")
    (c / "text.json").write_text("{not json\n")
    (c / "file.txt").write_text("a plain file\n")
    (c / "emptydir").mkdir()
    ro = c / "readonly"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return skipped


# ------------------------------------------------------------------------------------------------- rows


@dataclass
class Row:
    name: str  # what the input is
    args: list[str]  # after the command name; {c} = corpus folder, {out} = the row's output folder
    expect: str = "error"  # video, error, either (video or clear error), ok (exit 0, no video)
    command: str = "generate"
    output: str | None = "{out}/out.mp4"  # the video a generate row writes (None: not a video command)
    timeout: float = 300.0
    needs: tuple[str, ...] = ()  # corpus files that must exist
    quick: bool = False
    # filled in by run_row
    outcome: str = ""
    seconds: float = 0.0
    detail: str = ""
    rc: int | None = None
    base: str = ""  # the outcome before the TMPDIR / leftover-file checks
    problems: list[str] = field(default_factory=list)
    stderr: str = field(default="", repr=False)


def gen(name, image, audio, *extra, expect="error", output="{out}/out.mp4", needs=(), quick=False, timeout=300.0, crop=False):
    args = [image, audio, *(["--steps", "2"] if crop else FAST), *extra]  # crop: the face must be found
    if output is not None and "-o" not in extra:
        args += ["-o", output]
    return Row(name, args, expect, "generate", output, timeout, needs, quick)


def rows() -> list[Row]:
    P, A = "{c}/portrait.png", "{c}/speech1s.wav"
    r: list[Row] = [gen("valid portrait.png + 1 s speech.wav (baseline)", P, A, expect="video", quick=True)]
    img = [
        ("truncated PNG", "truncated.png", "error"),
        ("truncated JPEG", "truncated.jpg", "error"),
        ("0-byte .png", "empty.png", "error"),
        ("1x1 PNG", "1x1.png", "either"),
        ("8x8 PNG", "8x8.png", "either"),
        ("2000x16 PNG (extreme aspect)", "2000x16.png", "either"),
        ("6000x4000 JPEG", "6000x4000.jpg", "video"),
        ("PNG header claiming 100000x100000", "huge_header.png", "error"),
        ("JPEG header claiming 12000x12000 (truncated data)", "huge_header_12000.jpg", "error"),
        (".png that is really a JPEG", "jpeg_named.png", "video"),
        (".jpg that is really a PNG", "png_named.jpg", "video"),
        ("text file as image", "text.png", "error"),
        ("folder as image", "folder.png", "error"),
        ("missing image file", "nonexistent.png", "error"),
        ("mp4 video as image", "video_audio.mp4", "either"),
        ("grayscale (L) PNG", "gray.png", "video"),
        ("grayscale+alpha (LA) PNG", "gray_alpha.png", "video"),
        ("bilevel (1) PNG", "bilevel.png", "video"),
        ("RGBA PNG", "rgba.png", "video"),
        ("RGBA PNG, fully transparent", "rgba_transparent.png", "either"),
        ("palette (P) PNG", "palette.png", "video"),
        ("CMYK JPEG", "cmyk.jpg", "video"),
        ("16-bit grayscale PNG", "gray16.png", "video"),
        ("32-bit float TIFF", "float.tiff", "either"),
        ("animated GIF (3 frames)", "animated.gif", "video"),
        ("WebP", "portrait.webp", "video"),
    ]
    for name, f, exp in img:
        r.append(gen(f"image: {name}", "{c}/" + f, A, expect=exp, needs=(f,), quick=f in ("truncated.png", "exif6.jpg")))
    for k in range(1, 9):
        r.append(gen(f"image: JPEG with EXIF orientation {k}, face cropped", f"{{c}}/exif{k}.jpg", A, expect="video", needs=(f"exif{k}.jpg",), quick=k == 6, crop=True))
    aud = [
        ("8-bit PCM wav", "8bit.wav", "video"),
        ("24-bit PCM wav", "24bit.wav", "video"),
        ("32-bit PCM wav", "32bit.wav", "video"),
        ("32-bit float wav", "float32.wav", "video"),
        ("float wav with NaN/inf samples", "float32_nan.wav", "either"),
        ("96 kHz wav", "96k.wav", "video"),
        ("8 kHz wav", "8k.wav", "video"),
        ("stereo wav", "stereo.wav", "video"),
        ("stereo wav, channels in anti-phase", "stereo_antiphase.wav", "either"),
        ("6-channel wav", "6ch.wav", "video"),
        ("0-length wav (header, no frames)", "zero_length.wav", "error"),
        ("10 ms wav", "10ms.wav", "either"),
        ("silent 1 s wav", "silent.wav", "error"),  # refused: nothing to lip-sync
        ("truncated wav (header claims more data)", "truncated.wav", "either"),
        ("wav cut inside its header (30 bytes)", "header_only.wav", "error"),
        ("0-byte .wav", "empty.wav", "error"),
        ("text file as .wav", "text.wav", "error"),
        ("folder as audio", "folder.wav", "error"),
        ("missing audio file", "nonexistent.wav", "error"),
        (".mp3 that is really a wav", "wav_named.mp3", "video"),
        ("FLAC", "speech.flac", "video"),
        ("MP3", "speech.mp3", "video"),
        ("Ogg Opus (48 kHz)", "speech.ogg", "video"),
        ("M4A (AAC)", "speech.m4a", "video"),
        ("mp4 video with no audio track", "video_noaudio.mp4", "error"),
        ("mp4 video with an audio track", "video_audio.mp4", "video"),
        ("0-byte .mp4 as audio", "empty.mp4", "error"),
        ("text file as .mp4 audio", "text.mp4", "error"),
        ("image as audio", "portrait.png", "error"),
    ]
    for name, f, exp in aud:
        r.append(gen(f"audio: {name}", P, "{c}/" + f, expect=exp, needs=(f,), quick=f in ("6ch.wav", "text.wav")))
    opt = [
        ("--seed 2**70", ["--seed", str(2**70)], "error"),
        ("--seed -1", ["--seed", "-1"], "error"),
        ("--seed 2**63-1", ["--seed", str(2**63 - 1)], "video"),
        ("--seed abc", ["--seed", "abc"], "error"),
        ("--steps 0", ["--steps", "0"], "error"),
        ("--steps -3", ["--steps", "-3"], "error"),
        ("--steps 10**9", ["--steps", str(10**9)], "error"),
        ("--fps nan", ["--fps", "nan"], "error"),
        ("--fps inf", ["--fps", "inf"], "error"),
        ("--fps 0", ["--fps", "0"], "error"),
        ("--fps -25", ["--fps", "-25"], "error"),
        ("--fps 1e6", ["--fps", "1e6"], "error"),
        ("--size 0", ["--size", "0"], "error"),
        ("--size -64", ["--size", "-64"], "error"),
        ("--size 100000", ["--size", "100000"], "error"),
        ("--identity-scale 1e309 (inf)", ["--identity-scale", "1e309"], "error"),
        ("--identity-scale nan", ["--identity-scale", "nan"], "error"),
        ("--emotion-scale -inf", ["--emotion-scale", "-inf"], "error"),
        ("--sampler garbage", ["--sampler", "garbage"], "error"),
        ("--recipe garbage", ["--recipe", "garbage"], "error"),
        ("--recipe size=99999", ["--recipe", "size=99999"], "error"),
        ("--recipe steps=abc", ["--recipe", "steps=abc"], "error"),
        ("--recipe overlap=-5", ["--recipe", "overlap=-5"], "error"),
        ("--recipe guidance_interval=5:1", ["--recipe", "guidance_interval=5:1"], "either"),
        ("--recipe ',,,='", ["--recipe", ",,,="], "error"),
        ("--emotion unknown label", ["--emotion", "ecstatic"], "error"),
        ("--emotion happy:nan", ["--emotion", "happy:nan"], "error"),
        ("--emotion happy:-1", ["--emotion", "happy:-1"], "error"),
        ("--emotion happy:1e309", ["--emotion", "happy:1e309"], "error"),
        ("--emotion 'happy*nan+sad*1'", ["--emotion", "happy*nan+sad*1"], "error"),
        ("--emotion '' (empty)", ["--emotion", ""], "either"),
        ("--emotion schedule '0:happy,0:sad'", ["--emotion", "0:happy,0:sad"], "either"),
        ("--emotion schedule 'nan:happy'", ["--emotion", "nan:happy"], "error"),
        ("--emotion schedule '0:happy,-2:sad'", ["--emotion", "0:happy,-2:sad"], "error"),
        ("--emotion missing prior .npy", ["--emotion", "{c}/missing.npy"], "error"),
        ("--emotion text file as .npy prior", ["--emotion", "{c}/text.npy"], "error"),
        ("--emotion malformed .json prior", ["--emotion", "{c}/text.json"], "error"),
        ("--emotion text file as reference video", ["--emotion", "{c}/text.mp4"], "error"),
        ("--max-seconds -1", ["--max-seconds", "-1"], "error"),
        ("--max-seconds nan", ["--max-seconds", "nan"], "error"),
        ("--max-seconds 0.5 with 1 s audio", ["--max-seconds", "0.5"], "error"),
        ("--transition nan", ["--emotion", "0:happy,0.5:sad", "--transition", "nan"], "error"),
        ("--transition -1", ["--emotion", "0:happy,0.5:sad", "--transition", "-1"], "error"),
        ("--transition inf", ["--emotion", "0:happy,0.5:sad", "--transition", "inf"], "error"),
        ("--device garbage", ["--device", "garbage"], "error"),
        ("--device cuda:99", ["--device", "cuda:99"], "error"),
        ("--model garbage", ["--model", "garbage"], "error"),
        ("--weights missing folder", ["--weights", "{c}/nope"], "error"),
        ("--weights empty folder", ["--weights", "{c}/emptydir"], "error"),
        ("--weights a text file", ["--weights", "{c}/file.txt"], "error"),
        ("--performance garbage", ["--performance", "garbage"], "error"),
        ("--stream", ["--stream"], "video"),
        ("--model emotivetalk (emotion from the speech)", ["--model", "emotivetalk"], "video"),
        ("--model emotivetalk --emotion happy:0.5", ["--model", "emotivetalk", "--emotion", "happy:0.5"], "video"),
        ("--model emotivetalk --emotion ecstatic", ["--model", "emotivetalk", "--emotion", "ecstatic"], "error"),
        ("--model emotivetalk --emotion text file as video", ["--model", "emotivetalk", "--emotion", "{c}/text.mp4"], "error"),
    ]
    for name, extra, exp in opt:
        r.append(gen(f"option: {name}", P, A, *extra, expect=exp, quick=name in ("--fps nan", "--recipe garbage")))
    outs = [
        ("-o out.txt", "{out}/out.txt", "either"),
        # root ignores the read-only mode, so there a video is the right answer
        ("-o into a missing dir in a read-only dir", "{c}/readonly/missing/out.mp4", "either" if os.geteuid() == 0 else "error"),
        ("-o under a path whose parent is a file", "{c}/file.txt/out.mp4", "error"),
        ("-o into /proc (read-only filesystem)", "/proc/dicetalk-fuzz/out.mp4", "error"),
        ("-o an existing folder", "{c}/emptydir", "error"),
        ("-o '' (empty)", "", "error"),
    ]
    for name, o, exp in outs:
        r.append(gen(f"option: {name}", P, A, "-o", o, expect=exp, output=o))
    r.append(gen("audio: 5.5 s speech (whole example)", P, "{c}/speech_full.wav", expect="video"))
    # other commands
    ev = [
        ("evaluate: text file as video (--portrait)", ["{c}/text.mp4", "--portrait", P]),
        ("evaluate: 0-byte .mp4 (--portrait)", ["{c}/empty.mp4", "--portrait", P]),
        ("evaluate: mp4 with no audio track (--portrait)", ["{c}/video_noaudio.mp4", "--portrait", P]),
        ("evaluate: missing video (--portrait)", ["{c}/nope.mp4", "--portrait", P]),
        ("evaluate: video, text file as --portrait", ["{c}/video_audio.mp4", "--portrait", "{c}/text.png"]),
        ("evaluate: empty folder, --reference a text file", ["{c}/emptydir", "--reference", "{c}/file.txt"]),
        ("evaluate: --compare two malformed json", ["--compare", "{c}/text.json", "{c}/text.json"]),
        ("evaluate: --embeddings a text file", ["--embeddings", "{c}/file.txt"]),
        ("evaluate: no arguments", []),
    ]
    for name, args in ev:
        expect = "either" if "no audio track" in name else "error"  # scored without Sync-C/D, with a warning
        r.append(Row(name, args, expect, "evaluate", None, 300.0, (), name.startswith("evaluate: text")))
    r += [
        Row("info: default", [], "ok", "info", None, 120.0),
        Row("info: --config garbage", ["--config", "garbage"], "error", "info", None, 120.0),
        Row("ui: --port -1", ["--port", "-1"], "error", "ui", None, 60.0),
        Row("ui: --port 99999", ["--port", "99999"], "error", "ui", None, 60.0),
        Row("ui: --auth-file missing", ["--auth-file", "{c}/nope.txt"], "error", "ui", None, 60.0),
        Row("ui: --host 0.0.0.0 without login", ["--host", "0.0.0.0"], "error", "ui", None, 60.0),
        Row("ui: --max-steps 0", ["--max-steps", "0"], "error", "ui", None, 60.0),
        Row("convert-official: text file as release", ["{c}/file.txt", "{out}/conv"], "error", "convert-official", None, 120.0),
        Row("convert-official: empty release folder", ["{c}/emptydir", "{out}/conv"], "error", "convert-official", None, 120.0),
        Row("render-eval: text file as dataset", ["{c}/file.txt", "-o", "{out}/re"], "error", "render-eval", None, 120.0),
        Row("render-eval: empty dataset folder", ["{c}/emptydir", "-o", "{out}/re"], "error", "render-eval", None, 120.0),
        Row("synth: --size 0", ["{out}/world", "--preset", "tiny", "--size", "0"], "error", "synth", None, 120.0),
        Row("synth: --identities -1", ["{out}/world", "--preset", "tiny", "--identities", "-1"], "error", "synth", None, 120.0),
        Row("synth: into a text file", ["{c}/file.txt", "--preset", "tiny"], "error", "synth", None, 120.0),
    ]
    return r


# -------------------------------------------------------------------------------------------------- run


def dicetalk_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "dicetalk"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dicetalk"]


def check_video(path: Path) -> str | None:
    """None when `path` is a video with > 0 decodable frames and an audio track, else why not."""
    import av

    if not path.is_file():
        return "no output file"
    try:
        with av.open(str(path)) as f:
            if not f.streams.video:
                return "output has no video stream"
            if not f.streams.audio:
                return "output has no audio track"
            n = sum(1 for _ in f.decode(video=0))
            if n == 0:
                return "output has 0 video frames"
    except Exception as exc:
        return f"output does not open: {type(exc).__name__}: {exc}"
    return None


def _sub(s: str, c: Path, out: Path) -> str:
    return s.replace("{c}", str(c)).replace("{out}", str(out))


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def run_row(row: Row, idx: int, corpus: Path, work: Path) -> Row:
    rdir = work / f"row{idx:03d}"
    out, tmp = rdir / "out", rdir / "tmp"
    out.mkdir(parents=True)
    tmp.mkdir()
    args = [_sub(a, corpus, out) for a in row.args]
    argv = dicetalk_cmd() + [row.command] + args
    env = dict(os.environ, TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTHONWARNINGS", None)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=rdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    timed_out = False
    try:
        _, err = proc.communicate(timeout=row.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this row's own child leads
        except ProcessLookupError:
            pass
        _, err = proc.communicate()
    row.seconds = time.monotonic() - t0
    row.rc = proc.returncode
    row.stderr = err or ""
    lines = [ln.strip() for ln in row.stderr.splitlines() if ln.strip()]
    problems: list[str] = []
    outcome = "BAD"
    if timed_out:
        problems.append(f"hang: killed after {row.timeout:.0f} s")
    elif proc.returncode == 0:
        if row.output is not None:
            why = check_video(Path(_sub(row.output, corpus, out)))
            if why:
                problems.append(f"exit 0 but {why}")
            else:
                outcome = "video"
        else:
            outcome = "ok"
    else:
        if "Traceback" in row.stderr:
            problems.append("traceback")
        elif len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines")
        elif not lines[0].startswith("error:"):
            problems.append("stderr line does not start with 'error:'")
        else:
            outcome = "clear error"
    if outcome == "clear error" and row.expect == "video":
        problems.append("expected a video")
    if outcome == "video" and row.expect == "error":
        problems.append("expected an error")
    if outcome == "ok" and row.expect == "error":
        problems.append("expected an error")
    left_tmp = _listing(tmp)
    if left_tmp:
        problems.append(f"left in TMPDIR: {', '.join(left_tmp[:3])}")
    stray = [p for p in _listing(out) if Path(p).name.startswith(".") and ".tmp" in Path(p).name]
    if stray:
        problems.append(f"temp files in output folder: {', '.join(stray[:3])}")
    if outcome == "clear error" and row.command == "generate":
        left = [p for p in _listing(out)]
        if left:
            problems.append(f"failed run left files in output folder: {', '.join(left[:3])}")
    for o in (row.output or "",):  # outputs written outside the row's folder (read-only targets)
        if o and "{out}" not in o and outcome != "video":
            p = Path(_sub(o, corpus, out))
            if p.parent.is_dir() and any(x.name.startswith(".") and ".tmp" in x.name for x in p.parent.iterdir()):
                problems.append("temp files left next to the output")
    row.base = outcome if not any(p.startswith(("expected", "hang", "traceback", "exit 0")) or "stderr" in p for p in problems) else "BAD"
    row.problems = problems
    if problems:
        outcome = "BAD"
    first = next((ln for ln in lines if ln.startswith("error:")), None)
    if first is None:
        first = next((ln for ln in reversed(lines) if ln and not ln.startswith(("0%", "100%")) and "it/s" not in ln), "")
        if outcome == "BAD" and "Traceback" in row.stderr:
            first = lines[-1] if lines else ""
    row.outcome = outcome
    pre = [f"otherwise {row.base}"] if outcome == "BAD" and row.base != "BAD" else []
    row.detail = "; ".join(pre + problems + ([first] if first and row.base != "video" else []))
    row.detail = row.detail.replace(str(out), "<out>").replace(str(corpus), "<corpus>")  # the table does not show temp paths
    shutil.rmtree(rdir, ignore_errors=True)
    return row


def _fix_perms(c: Path) -> None:
    for p in [c, *c.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(p.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)


def _cell(s: str, limit: int = 200) -> str:
    s = s.replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def table(rs: list[Row]) -> str:
    out = ["| # | input | command | expected | outcome | seconds | stderr / why |", "| ---: | --- | --- | --- | --- | ---: | --- |"]
    for k, r in enumerate(rs, 1):
        oc = f"**{r.outcome}**" if r.outcome == "BAD" else r.outcome
        out.append(f"| {k} | {_cell(r.name)} | {r.command} | {r.expect} | {oc} | {r.seconds:.1f} | {_cell(r.detail)} |")
    return "\n".join(out)


def summary(rs: list[Row]) -> str:
    v = sum(r.outcome == "video" for r in rs)
    e = sum(r.outcome == "clear error" for r in rs)
    ok = sum(r.outcome == "ok" for r in rs)
    bad = sum(r.outcome == "BAD" for r in rs)
    s = f"{len(rs)} rows: {v} videos, {e} clear errors, {bad} BAD"
    only_tmp = sum(r.outcome == "BAD" and r.base != "BAD" for r in rs)
    if only_tmp:
        s += (f"; {only_tmp} of the BAD rows only for files left behind (in TMPDIR or the output folder), "
              f"which without that would be {sum(r.base == 'video' for r in rs)} videos, "
              f"{sum(r.base == 'clear error' for r in rs)} clear errors, {sum(r.base == 'BAD' for r in rs)} BAD")
    return s + (f" ({ok} ok: commands that exit 0 without a video)" if ok else "")


def write_section(path: Path, rs: list[Row], cmdline: str, total: float, skipped: dict[str, str]) -> None:
    date = _dt.date.today().isoformat()
    body = [
        BEGIN,
        "## Fuzz corpus: hostile inputs and options (issue 37)",
        "",
        "`benchmarks/fuzz.py` builds hostile images, audio and videos itself (from `examples/portrait.png` and the first "
        "second of `examples/speech.wav`, in a temporary folder it removes) plus hostile option values, and runs the CLI "
        "on each as a subprocess (every generate row with `--no-crop --steps 2`, `TMPDIR` a fresh empty folder, 2 rows "
        "at a time). A row is **video** (exit 0, the output opens with PyAV, > 0 frames and an audio track), **ok** "
        "(exit 0 of a command that writes no video), **clear error** (non-zero exit, stderr exactly one line starting "
        "`error:`), or **BAD**: anything else (traceback, several stderr lines, hang, exit 0 without a valid video, a "
        "clear error where the input is valid, a video where only an error makes sense, files left in `TMPDIR`, "
        "`.*.tmp*` files or a failed run's files in the output folder). *expected* `either` accepts a video or a clear error.",
        "",
        "```bash",
        f"{cmdline}   # {total / 60:.1f} min on 2 cores, {date}",
        "```",
        "",
        f"**{summary(rs)}**",
        "",
        table(rs),
    ]
    if skipped:
        body += ["", "Inputs this machine could not make (rows skipped): " + "; ".join(f"`{k}` ({v})" for k, v in skipped.items())]
    body.append(END)
    section = "\n".join(body) + "\n"
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + section.rstrip("\n") + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a handful of rows")
    ap.add_argument("--write", type=Path, help="write the table between the fuzz markers of this markdown file")
    ap.add_argument("--workers", type=int, default=2, help="rows run at once (default 2)")
    ap.add_argument("--only", help="run only rows whose input contains this text")
    ap.add_argument("--timeout", type=float, help="override every row's timeout (seconds)")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="dicetalk-fuzz-"))
    corpus, work = base / "corpus", base / "work"
    corpus.mkdir()
    work.mkdir()
    try:
        skipped = build_corpus(corpus)
        rs = [r for r in rows() if not (a.quick and not r.quick)]
        if a.only:
            rs = [r for r in rs if a.only in r.name]
        for r in rs:
            if a.timeout:
                r.timeout = a.timeout
        missing = [r for r in rs if any(n in skipped for n in r.needs)]
        rs = [r for r in rs if r not in missing]
        print(f"{len(rs)} rows, {max(1, min(a.workers, 2))} workers, corpus in {corpus}", flush=True)
        with futures.ThreadPoolExecutor(max_workers=max(1, min(a.workers, 2))) as pool:
            jobs = {pool.submit(run_row, r, k, corpus, work): r for k, r in enumerate(rs)}
            for done, j in enumerate(futures.as_completed(jobs), 1):
                r = j.result()
                print(f"[{done}/{len(rs)}] {r.outcome:11s} {r.seconds:6.1f}s  {r.name}  {r.detail[:160]}", flush=True)
    finally:
        _fix_perms(base)
        shutil.rmtree(base, ignore_errors=True)
    total = time.monotonic() - t0
    print()
    print(table(rs))
    print()
    print(summary(rs), f"in {total:.0f} s")
    for r in rs:
        if r.outcome == "BAD":
            print(f"BAD: {r.name}: {r.detail}")
            if r.base == "BAD":  # show what stderr said, without progress bars
                keep = [ln for ln in r.stderr.splitlines() if ln.strip() and "it/s]" not in ln and "s/it]" not in ln]
                for ln in keep[-8:]:
                    print(f"    | {ln[:300]}")
    if a.write:
        cmd = "python benchmarks/fuzz.py" + (" --quick" if a.quick else "") + (f" --only {shlex.quote(a.only)}" if a.only else "")
        cmd += f" --write {a.write}"
        write_section(a.write, rs, cmd, total, skipped)
        print(f"wrote {a.write}")
    return 1 if any(r.outcome == "BAD" for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
