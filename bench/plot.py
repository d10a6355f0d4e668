"""docs/schedule.svg: calls per reaped instance against detection lag, one point per schedule and fleet."""

from __future__ import annotations

from typing import Any

from bench.scenarios import FLEETS


def plot(rows: list[dict[str, Any]]) -> str:
    """An SVG of calls per instance against lag p95 (share of T), one point per schedule and fleet."""
    width, height, left, bottom, top, right = 640, 400, 70, 50, 30, 200
    points = [r for r in rows if r["schedule"] in ("learned", "fixed")]
    max_calls = max(4.0, *(r["calls"] for r in points)) * 1.1
    max_lag = max(0.5, *(r["lag_p95_share"] for r in points)) * 1.1

    def xy(calls: float, lag: float) -> tuple[float, float]:
        x = left + (width - left - right) * calls / max_calls
        y = height - bottom - (height - bottom - top) * lag / max_lag
        return x, y

    colours = {"learned": "#1b7837", "fixed": "#b2182b"}
    shapes = {label: n for n, (label, _, _) in enumerate(FLEETS)}
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">calls per reaped instance vs detection lag (p95, share of T)</text>',
    ]
    x0, y0 = xy(0, 0)
    x1, y1 = xy(max_calls, max_lag)
    svg.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>')
    svg.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>')
    for tick in range(int(max_calls) + 1):
        x, _ = xy(tick, 0)
        svg.append(f'<text x="{x}" y="{y0 + 16}" text-anchor="middle">{tick}</text>')
    for share in (0.1, 0.25, 0.5, 0.75, 1.0):
        if share <= max_lag:
            _, y = xy(0, share)
            svg.append(f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end">{share:.0%}</text>')
    tx, ty = xy(2.5, 0.10)
    svg.append(
        f'<rect x="{x0}" y="{ty}" width="{tx - x0}" height="{y0 - ty}" fill="#1b7837" fill-opacity="0.08" '
        'stroke="#1b7837" stroke-dasharray="4 3"/>'
    )
    svg.append(f'<text x="{x0 + 4}" y="{ty - 4}" fill="#1b7837">target: ≤ 2.5 calls, lag ≤ 10 % of T</text>')
    svg.append(
        f'<text x="{(x0 + x1) / 2}" y="{height - 12}" text-anchor="middle">DELETE + status calls per instance</text>'
    )
    svg.append(
        f'<text x="16" y="{(y0 + y1) / 2}" transform="rotate(-90 16 {(y0 + y1) / 2})" text-anchor="middle">'
        "lag p95 / T</text>"
    )
    for row in points:
        x, y = xy(row["calls"], row["lag_p95_share"])
        colour = colours[row["schedule"]]
        shape = shapes.get(row["fleet"], 0)
        if shape == 0:
            svg.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{colour}"/>')
        elif shape == 1:
            svg.append(f'<rect x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12" fill="{colour}"/>')
        else:
            svg.append(
                f'<polygon points="{x:.1f},{y - 7:.1f} {x + 7:.1f},{y + 6:.1f} {x - 7:.1f},{y + 6:.1f}" fill="{colour}"/>'
            )
    legend_x = width - right + 20
    for n, (label, _, _) in enumerate(FLEETS):
        svg.append(
            f'<text x="{legend_x}" y="{top + 40 + 18 * n}">{["●", "■", "▲"][n]} {label.split(":")[0]}</text>'
        )
    for n, (schedule, colour) in enumerate(colours.items()):
        svg.append(
            f'<text x="{legend_x}" y="{top + 110 + 18 * n}" fill="{colour}">{schedule} schedule</text>'
        )
    svg.append("</svg>")
    return "\n".join(svg) + "\n"
