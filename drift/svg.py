"""Small inline-SVG charts for the HTML reports: no JavaScript, no external assets.

``bar_chart`` draws grouped vertical bars (one colour per series, e.g. reference vs
current shares over a feature's bins) and ``horizontal_bars`` one bar per label (e.g.
feature importances). Both return an ``<svg>`` element to paste into a page; every text
is escaped and hovering a bar shows its exact value (an SVG ``<title>``). Pure functions:
``drift.report`` and the explain report call them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

#: Series colours in order: a neutral grey for the first (the reference), then accents.
PALETTE = ("#8c96a6", "#d9480f", "#1c7ed6", "#2f9e44", "#ae3ec9")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'
#: Labels longer than this are cut on the axis (the bar's tooltip keeps them whole).
MAX_LABEL_CHARS = 22
# Rough width of one character at the font size above, to size label areas.
_CHAR_WIDTH = 6.5

_BAR = 11
_GROUP_GAP = 8
_PLOT_HEIGHT = 170
_TOP = 44
_LEFT = 52
_RIGHT = 16
_ROW = 20


def bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str,
    *,
    percent: bool = False,
) -> str:
    """Grouped vertical bars: one group per label, one bar per series in each group.

    Values are drawn from zero up (negative or non-finite values draw no bar);
    ``percent`` formats the axis and tooltips as percentages of 1.
    """
    names = list(series)
    for name in names:
        if len(series[name]) != len(labels):
            raise ValueError(
                f"series {name!r} has {len(series[name])} values for {len(labels)} labels"
            )
    bars_width = max(len(names), 1) * _BAR
    # Few labels spread out over a minimum width rather than huddle on the left.
    plot_width = max(len(labels) * (bars_width + _GROUP_GAP), 200)
    group_width = plot_width / max(len(labels), 1)
    label_height = _label_height(labels)
    width = _LEFT + plot_width + _RIGHT
    height = _TOP + _PLOT_HEIGHT + label_height
    values = [_drawable(v) for name in names for v in series[name]]
    top, step = _axis(max(values, default=0.0))
    base = _TOP + _PLOT_HEIGHT

    parts = [_open_svg(width, height, title), _title_text(title)]
    parts.extend(_legend(names))
    for tick in (i * step for i in range(round(top / step) + 1)):
        y = base - tick / top * _PLOT_HEIGHT
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_width}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#e5e7eb"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
            f"{escape(_number(tick, percent))}</text>"
        )
    for index, label in enumerate(labels):
        left = _LEFT + index * group_width + (group_width - bars_width) / 2
        for position, name in enumerate(names):
            raw = series[name][index]
            bar_height = _drawable(raw) / top * _PLOT_HEIGHT
            tooltip = f"{label}: {name} {_number(raw, percent)}"
            parts.append(
                f'<rect x="{left + position * _BAR:.1f}" y="{base - bar_height:.1f}" '
                f'width="{_BAR - 1}" height="{bar_height:.1f}" '
                f'fill="{PALETTE[position % len(PALETTE)]}">'
                f"<title>{escape(tooltip)}</title></rect>"
            )
        center = left + len(names) * _BAR / 2
        parts.append(
            f'<text transform="translate({center:.1f},{base + 12}) rotate(-40)" '
            f'text-anchor="end" {FONT}><title>{escape(label)}</title>'
            f"{escape(_short(label))}</text>"
        )
    parts.append(
        f'<line x1="{_LEFT}" x2="{_LEFT + plot_width}" y1="{base}" y2="{base}" stroke="#374151"/>'
        f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{base}" stroke="#374151"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars(
    labels: Sequence[str], values: Sequence[float], title: str, *, percent: bool = False
) -> str:
    """One horizontal bar per label, from a zero line (negative values go left of it);
    each bar is followed by its value."""
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values for {len(labels)} labels")
    label_width = max((len(_short(label)) for label in labels), default=0) * _CHAR_WIDTH + 12
    plot_width = 320
    value_width = 64
    width = label_width + plot_width + value_width
    height = 30 + len(labels) * _ROW + 8
    finite = [v for v in values if math.isfinite(v)]
    low = min(0.0, *finite) if finite else 0.0
    high = max(0.0, *finite) if finite else 0.0
    span = (high - low) or 1.0
    zero = label_width + (-low / span) * plot_width

    parts = [_open_svg(width, height, title), _title_text(title)]
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 30 + index * _ROW
        length = (abs(value) / span * plot_width) if math.isfinite(value) else 0.0
        left = zero - length if value < 0 else zero
        text = _number(value, percent)
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 13}" text-anchor="end" {FONT}>'
            f"<title>{escape(label)}</title>{escape(_short(label))}</text>"
            f'<rect x="{left:.1f}" y="{y + 3}" width="{length:.1f}" height="{_ROW - 6}" '
            f'fill="{PALETTE[2]}"><title>{escape(f"{label}: {text}")}</title></rect>'
            f'<text x="{max(left + length, zero) + 4:.1f}" y="{y + 13}" {FONT}>'
            f"{escape(text)}</text>"
        )
    parts.append(
        f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="28" y2="{height - 6}" stroke="#374151"/></svg>'
    )
    return "".join(parts)


def _open_svg(width: float, height: float, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    )


def _title_text(title: str) -> str:
    return (
        f'<text x="4" y="16" font-family="system-ui, sans-serif" font-size="13" '
        f'font-weight="600">{escape(title)}</text>'
    )


def _legend(names: Sequence[str]) -> list[str]:
    parts = []
    x = _LEFT
    for position, name in enumerate(names):
        parts.append(
            f'<rect x="{x}" y="24" width="10" height="10" '
            f'fill="{PALETTE[position % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="33" {FONT}>{escape(name)}</text>'
        )
        x += int(24 + len(name) * _CHAR_WIDTH)
    return parts


def _label_height(labels: Sequence[str]) -> int:
    longest = max((len(_short(label)) for label in labels), default=0)
    # The labels are rotated by 40 degrees: sin(40) of their length hangs below the axis.
    return int(24 + longest * _CHAR_WIDTH * 0.65)


def _short(label: str) -> str:
    if len(label) <= MAX_LABEL_CHARS:
        return label
    return label[: MAX_LABEL_CHARS - 1] + "…"


def _drawable(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


def _axis(largest: float) -> tuple[float, float]:
    """The axis maximum and tick step: about four ticks of a 1-2-2.5-5 step, the
    maximum ``largest`` rounded up to a whole step."""
    if largest <= 0:
        return 1.0, 0.25
    raw = largest / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (m * magnitude for m in (1.0, 2.0, 2.5, 5.0) if m * magnitude >= raw)
    step = next(steps, 10 * magnitude)
    return step * math.ceil(largest / step - 1e-9), step


def _number(value: float, percent: bool) -> str:
    if not math.isfinite(value):
        return str(value)
    if percent:
        return f"{value * 100:.3g}%"
    return f"{value:.3g}"
