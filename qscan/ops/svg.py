"""Bar charts as SVG text, for `qscan report`: no plotting library (matplotlib was 180 MiB installed).

Counts per bucket are bars (a line would draw a ramp between two buckets that nothing happened
in); the value axis starts at zero with whole-number ticks for counts. Every bar carries its
figures (``data-series``, ``data-label``, ``data-value``) and a ``<title>`` a browser shows on
hover, so the chart can be read exactly, and checked by a test, not only looked at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 56, 36
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
AXIS, GRID, MUTED = "#444444", "#e4e4e4", "#777777"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    color: str
    values: Sequence[float]
    hatch: bool = False


def _num(v: float) -> str:
    return f"{v:g}" if v != int(v) else str(int(v))


def nice_ticks(top: float, integer: bool, count: int = 5) -> list[float]:
    """0 .. a round number >= ``top`` in about ``count`` steps of 1, 2 or 5 x 10^n."""
    if top <= 0:
        return [0, 1] if integer else [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _text(x: float, y: float, text: str, *, size: int = 11, anchor: str = "middle", color: str = AXIS,
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}" '
            f'{FONT}{extra}>{escape(text)}</text>')


def _frame(title: str, height: int, body: list[str]) -> str:
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">',
            '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="6" height="6" fill="#dddddd"/>'
            '<line x1="0" y1="0" x2="0" y2="6" stroke="#888888" stroke-width="2"/></pattern></defs>',
            f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
            _text(WIDTH / 2, 22, title, size=14, extra=' font-weight="bold"')]
    return "\n".join([*head, *body, "</svg>"]) + "\n"


def _legend(series: Sequence[Series], y: float) -> list[str]:
    out, x = [], LEFT
    for s in series:
        fill = "url(#hatch)" if s.hatch else s.color
        out.append(f'<rect x="{x}" y="{y - 9}" width="12" height="12" fill="{fill}" stroke="{s.color}"/>')
        out.append(_text(x + 16, y + 1, s.name, anchor="start"))
        x += 28 + 7 * len(s.name)
    return out


def bars(title: str, labels: Sequence[str], series: Sequence[Series], *, ylabel: str, stacked: bool = True,
         integer: bool = True, empty: str = "no data in this period",
         tick_labels: Sequence[str] | None = None, tick_at_edge: bool = False) -> str:
    """Vertical bars, one slot per label: stacked (counts of parts of a whole) or side by side.

    ``tick_labels``: the text under each slot ("" for none); ``tick_at_edge``: a tick marks the
    start of its slot (a time bucket starts there) rather than its middle (a name)."""
    height = HEIGHT
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    base_y = TOP + plot_h
    n = max(1, len(labels))
    if stacked:
        totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    else:
        totals = [max((s.values[i] for s in series), default=0) for i in range(len(labels))]
    ticks = nice_ticks(max(totals, default=0), integer)
    scale = plot_h / ticks[-1]
    body = _legend(series, 42)
    for t in ticks:
        y = base_y - t * scale
        body.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(LEFT - 6, y + 4, _num(t), anchor="end", size=10))
    mid = TOP + plot_h / 2
    body.append(_text(16, mid, ylabel, extra=f' transform="rotate(-90 16 {mid:.1f})"'))
    slot = plot_w / n
    gap = min(slot * 0.15, 6) if n > 1 else slot * 0.3
    width = slot - gap
    for i, label in enumerate(labels):
        x0 = LEFT + i * slot + gap / 2
        y_top: float = base_y
        for k, s in enumerate(series):
            v = s.values[i]
            if stacked:
                x, w, h = x0, width, v * scale
                y = y_top - h
                y_top = y
            else:
                w = width / len(series)
                x, h = x0 + k * w, v * scale
                y = base_y - h
            if v <= 0:
                continue
            fill = "url(#hatch)" if s.hatch else s.color
            tip = f"{label}: {_num(v)} {s.name}"
            body.append(f'<rect class="bar" x="{x:.2f}" y="{y:.2f}" width="{max(w, 0.5):.2f}" '
                        f'height="{max(h, 0.5):.2f}" fill="{fill}" stroke="{s.color}" stroke-width="0.5" '
                        f'data-series="{escape(s.name)}" data-label="{escape(label)}" data-value="{_num(v)}">'
                        f"<title>{escape(tip)}</title></rect>")
    body.append(f'<line x1="{LEFT}" y1="{base_y}" x2="{WIDTH - RIGHT}" y2="{base_y}" stroke="{AXIS}"/>')
    if tick_labels is None:  # every n-th label; else the caller's (an empty one: no tick there)
        every = max(1, math.ceil(len(labels) / 12))
        tick_labels = [label if i % every == 0 else "" for i, label in enumerate(labels)]
    shown = list(tick_labels)
    for i in (i for i, t in enumerate(shown) if t):
        x = LEFT + i * slot if tick_at_edge else LEFT + (i + 0.5) * slot
        body.append(f'<line x1="{x:.1f}" y1="{base_y}" x2="{x:.1f}" y2="{base_y + 4}" stroke="{AXIS}"/>')
        body.append(_text(x, base_y + 16, shown[i], size=10))
    if not any(totals):
        body.append(_text(LEFT + plot_w / 2, TOP + plot_h / 2, empty, size=13, color=MUTED))
    return _frame(title, height, body)


def hbars(title: str, items: Sequence[tuple[str, float]], color: str, *, xlabel: str,
          empty: str = "no data in this period") -> str:
    """Horizontal bars, largest first, each with its value written beside it."""
    row = 22
    height = TOP + max(1, len(items)) * row + 48
    name_w = min(420, 12 + 6.5 * max((len(n) for n, _ in items), default=10))
    left = name_w + 8
    plot_w = WIDTH - left - RIGHT - 48
    ticks = nice_ticks(max((v for _, v in items), default=0), True)
    scale = plot_w / ticks[-1]
    base_y = TOP + max(1, len(items)) * row
    body: list[str] = []
    for t in ticks:
        x = left + t * scale
        body.append(f'<line x1="{x:.1f}" y1="{TOP - 4}" x2="{x:.1f}" y2="{base_y}" stroke="{GRID}"/>')
        body.append(_text(x, base_y + 16, _num(t), size=10))
    body.append(_text(left + plot_w / 2, base_y + 36, xlabel))
    for i, (name, v) in enumerate(items):
        y = TOP + i * row + 3
        short = name if len(name) <= 64 else name[:63] + "…"
        body.append(_text(left - 6, y + 12, short, anchor="end", size=10))
        body.append(f'<rect class="bar" x="{left}" y="{y}" width="{max(v * scale, 0.5):.2f}" '
                    f'height="{row - 6}" fill="{color}" data-series="{escape(xlabel)}" '
                    f'data-label="{escape(name)}" '
                    f'data-value="{_num(v)}"><title>{escape(f"{name}: {_num(v)}")}</title></rect>')
        body.append(_text(left + v * scale + 4, y + 12, _num(v), anchor="start", size=10))
    body.append(f'<line x1="{left}" y1="{TOP - 4}" x2="{left}" y2="{base_y}" stroke="{AXIS}"/>')
    if not items:
        body.append(_text(left + plot_w / 2, TOP + row / 2 + 4, empty, size=13, color=MUTED))
    return _frame(title, height, body)
