"""Collapsed stacks (py-spy's ``raw`` format: ``frame;frame;... count`` a line) made readable: the
top frames by own and total time, and a flame graph as a standalone SVG."""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field

WIDTH = 1200
ROW = 16
MIN_FRACTION = 0.002  # frames narrower than this share are left out of the drawing


def parse_collapsed(text: str) -> dict[tuple[str, ...], int]:
    """``{stack (root first): samples}`` from collapsed-stack lines; bad lines are skipped."""
    stacks: dict[tuple[str, ...], int] = defaultdict(int)
    for line in text.splitlines():
        head, _, count = line.rstrip().rpartition(" ")
        if not head or not count.isdigit():
            continue
        stacks[tuple(head.split(";"))] += int(count)
    return dict(stacks)


@dataclass(frozen=True)
class FrameShare:
    """One frame's share of the samples: ``own`` (it was running) and ``total`` (on the stack)."""

    frame: str
    own: float
    total: float


def top_frames(stacks: dict[tuple[str, ...], int], n: int = 15) -> list[FrameShare]:
    """The ``n`` frames with the most own time, as fractions of all samples."""
    samples = sum(stacks.values())
    if samples == 0:
        return []
    own: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for stack, count in stacks.items():
        own[stack[-1]] += count
        for frame in set(stack):  # a recursive frame counts once per sample
            total[frame] += count
    ranked = sorted(own, key=lambda f: (-own[f], f))[:n]
    return [FrameShare(f, own[f] / samples, total[f] / samples) for f in ranked]


@dataclass
class _Node:
    name: str
    samples: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(stacks: dict[tuple[str, ...], int]) -> _Node:
    root = _Node("all")
    for stack, count in stacks.items():
        root.samples += count
        node = root
        for frame in stack:
            node = node.children.setdefault(frame, _Node(frame))
            node.samples += count
    return root


def _depth(node: _Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=0)


def _colour(name: str) -> str:
    seed = sum(name.encode()) % 60
    return f"rgb({205 + seed // 2},{80 + seed * 2},{40 + seed // 3})"


def render_svg(stacks: dict[tuple[str, ...], int], title: str) -> str:
    """A flame graph (root at the bottom, width = share of samples) with a tooltip per frame."""
    root = _tree(stacks)
    total = max(root.samples, 1)
    rows = _depth(root)
    height = (rows + 2) * ROW
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<text x="4" y="{ROW - 4}">{html.escape(title)} ({root.samples} samples)</text>',
    ]

    def draw(node: _Node, x: float, level: int) -> None:
        width = WIDTH * node.samples / total
        if node.samples / total < MIN_FRACTION:
            return
        y = height - (level + 1) * ROW
        label = html.escape(node.name)
        share = 100.0 * node.samples / total
        parts.append(
            f"<g><title>{label} ({node.samples} samples, {share:.1f}%)</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{max(width - 0.5, 0.5):.1f}" height="{ROW - 1}" '
            f'fill="{_colour(node.name)}"/>'
        )
        chars = int(width / 7)
        if chars >= 4:
            text = node.name if len(node.name) <= chars else node.name[: chars - 2] + ".."
            parts.append(f'<text x="{x + 2:.1f}" y="{y + ROW - 4}">{html.escape(text)}</text>')
        parts.append("</g>")
        child_x = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            draw(child, child_x, level + 1)
            child_x += WIDTH * child.samples / total

    draw(root, 0.0, 0)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
