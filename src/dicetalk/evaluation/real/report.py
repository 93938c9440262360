"""``dicetalk evaluate VIDEO --portrait IMG --report report.html``: one self-contained page.

The page needs nothing but a browser: the frames are inline JPEGs (``data:`` URIs), the charts
inline SVG drawn here (no plotting library, no script, no network). It shows a strip of frames
with the tracked face box, the emotion probabilities over time, SyncNet's mean distance at every
audio offset (the minimum is Sync-D, its depth below the median Sync-C), the mouth opening
against the speech energy, and the identity similarity to the portrait over time.
"""

from __future__ import annotations

import base64
import html
import os

import numpy as np

from ...utils.atomic import write_text

WIDTH, HEIGHT, PAD, LEFT = 720, 200, 36, 60  # LEFT: room for the tick labels and the rotated y label
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
STRIP_FRAMES = 8


def _jpeg(image: np.ndarray, quality: int = 85) -> str:
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def frame_strip(frames: np.ndarray, boxes: np.ndarray | None, count: int = STRIP_FRAMES, height: int = 160) -> list[tuple[float, str]]:
    """(time in seconds, JPEG data URI) of ``count`` evenly spaced frames, the face box drawn."""
    import cv2

    index = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    out = []
    for i in index:
        frame = frames[i].copy()
        if boxes is not None and np.isfinite(boxes[i]).all():
            x0, y0, x1, y1 = (int(round(v)) for v in boxes[i])
            cv2.rectangle(frame, (x0, y0), (x1, y1), (0, 200, 0), max(1, frame.shape[0] // 200))
        scale = height / frame.shape[0]
        small = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
        out.append((i / 25.0, _jpeg(small)))
    return out


def line_chart(x, lines: dict[str, list], title: str, xlabel: str, ylabel: str, marker_x: float | None = None, y_range: tuple[float, float] | None = None) -> str:
    """An inline SVG line chart of ``lines`` (name -> values over ``x``); a dashed line at ``marker_x``."""
    x = np.asarray(x, np.float64)
    values = [np.asarray(v, np.float64) for v in lines.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.zeros(0)])
    if x.size < 2 or finite.size == 0:
        return f"<p class='none'>{html.escape(title)}: nothing to draw</p>"
    lo, hi = y_range if y_range is not None else (float(finite.min()), float(finite.max()))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = float(x.min()), float(x.max())

    def px(v):
        return LEFT + (v - x0) / (x1 - x0) * (WIDTH - LEFT - PAD)

    def py(v):
        return HEIGHT - PAD + (v - lo) / (hi - lo) * (2 * PAD - HEIGHT)

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' viewBox='0 0 {WIDTH} {HEIGHT}' role='img'>"]
    parts.append(f"<title>{html.escape(title)}</title>")
    parts.append(f"<rect x='{LEFT}' y='{PAD // 2}' width='{WIDTH - LEFT - PAD}' height='{HEIGHT - 1.5 * PAD:.0f}' fill='#fafafa' stroke='#ccc'/>")
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        parts.append(f"<text x='{LEFT - 4}' y='{py(v) + 4:.1f}' font-size='10' text-anchor='end'>{v:.3g}</text>")
        v = x0 + frac * (x1 - x0)
        parts.append(f"<text x='{px(v):.1f}' y='{HEIGHT - PAD + 14}' font-size='10' text-anchor='middle'>{v:.3g}</text>")
    parts.append(f"<text x='{(WIDTH + LEFT - PAD) / 2}' y='{HEIGHT - 4}' font-size='11' text-anchor='middle'>{html.escape(xlabel)}</text>")
    parts.append(f"<text x='12' y='{HEIGHT / 2}' font-size='11' text-anchor='middle' transform='rotate(-90 12 {HEIGHT / 2})'>{html.escape(ylabel)}</text>")
    if marker_x is not None:
        parts.append(f"<line x1='{px(marker_x):.1f}' x2='{px(marker_x):.1f}' y1='{PAD // 2}' y2='{HEIGHT - PAD}' stroke='#444' stroke-dasharray='4 3'/>")
    legend = []
    for k, (name, v) in enumerate(zip(lines, values)):
        colour = COLOURS[k % len(COLOURS)]
        ok = np.isfinite(v)
        points = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x[ok], v[ok]))
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.6' points='{points}'/>")
        legend.append(f"<span style='color:{colour}'>&#9632; {html.escape(name)}</span>")
    parts.append("</svg>")
    return "".join(parts) + "<div class='legend'>" + " ".join(legend) + "</div>"


def _normalised(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    hi = np.nanmax(v) if v.size and np.isfinite(v).any() else 0.0
    return v / hi if hi > 0 else v


def render_report(report: dict, frames: np.ndarray | None = None, boxes: np.ndarray | None = None) -> str:
    """The page (HTML text) of a :func:`~.score.score_real_video` report."""
    series = report.get("series", {})

    def fmt(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else html.escape(str(v)))

    rows = [
        ("judges", html.escape(f"{report['judges']['kind']}: " + ", ".join(report["judges"]["judges"]))),
        ("frames", f"{report['num_frames']} ({report['seconds_of_video']:g} s at 25 fps; source {report['fps']:g} fps, {report['resolution'][1]}x{report['resolution'][0]})"),
        ("emotion", "-" if not report.get("probabilities") else f"{html.escape(report['emotion'])} ({report['probabilities'][report['emotion']]:.3f})"),
        ("F-SIM to the portrait", f"{fmt(report['fsim'])} (lowest frame {fmt(report['fsim_min'])})"),
        ("Sync-C / Sync-D", f"{fmt(report['sync_c'])} / {fmt(report['sync_d'])} (offset {fmt(report['sync_offset'])} frames)"),
        ("mouth opening ~ speech energy", fmt(report.get("opening_energy_corr"))),
    ]
    body = [f"<h1>{html.escape(os.path.basename(report['video']))}</h1>", "<table>"]
    body += [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows]
    body.append("</table>")
    for line in report.get("warnings", []):
        body.append(f"<p class='warn'>warning: {html.escape(line)}</p>")
    if frames is not None:
        body.append("<h2>Frames</h2><div class='strip'>")
        for second, uri in frame_strip(frames, boxes):
            body.append(f"<figure><img src='{uri}' alt='frame at {second:.2f} s'><figcaption>{second:.2f} s</figcaption></figure>")
        body.append("</div>")
    if "emotion" in series:
        emo = series["emotion"]
        body.append("<h2>Emotion over time</h2>")
        body.append(line_chart(emo["time"], {k: v for k, v in emo.items() if k != "time"}, "emotion probabilities", "seconds", "probability", y_range=(0.0, 1.0)))
    if "sync" in series:
        sync = series["sync"]
        body.append("<h2>Lip sync: mean distance at each audio offset</h2>")
        body.append(line_chart(sync["offset"], {"mean distance": sync["distance"]}, "SyncNet offset curve", "offset (frames)", "distance", marker_x=report["sync_offset"]))
    if "mouth_opening" in series:
        lines = {"mouth opening (scaled to its maximum)": _normalised(series["mouth_opening"])}
        if "speech_energy" in series:
            lines["speech energy (scaled to its maximum)"] = _normalised(series["speech_energy"])
        body.append("<h2>Mouth opening against speech energy</h2>")
        body.append(line_chart(series["time"], lines, "mouth opening and speech energy", "seconds", "relative", y_range=(0.0, 1.0)))
    if "fsim" in series:
        body.append("<h2>Identity: similarity to the portrait</h2>")
        body.append(line_chart(series["fsim"]["time"], {"F-SIM": series["fsim"]["value"]}, "identity over time", "seconds", "cosine"))
    style = (
        "body{font-family:system-ui,sans-serif;max-width:980px;margin:1em auto;color:#222}"
        "table{border-collapse:collapse}th{text-align:left;padding:2px 12px 2px 0;font-weight:600}td{padding:2px 0}"
        ".strip{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0}figcaption{font-size:11px;text-align:center}"
        ".legend{font-size:12px;margin-bottom:1em}.warn{color:#a40}.none{color:#888}"
    )
    return f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>dicetalk evaluate: {html.escape(os.path.basename(report['video']))}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def write_report(path: str | os.PathLike, report: dict, frames: np.ndarray | None = None, boxes: np.ndarray | None = None) -> None:
    """Write the page atomically (an earlier page survives any failure)."""
    write_text(path, render_report(report, frames, boxes))
