#!/usr/bin/env python3
"""Draw the book's block diagrams into ``assets/figures/`` (matplotlib, deterministic).

Regenerate (the Makefile does not call this script; the PNGs are committed)::

    .venv/bin/python scripts/make_figures.py            # all figures
    .venv/bin/python scripts/make_figures.py --out DIR  # somewhere else

Figures (Diff-MST: Vanka et al., ISMIR 2024, arXiv:2407.08889):

- ``diffmst_overview.png``: tracks + reference -> encoders -> transformer -> MLPs ->
  parameters -> differentiable mixing console -> mix, compared with the reference.
- ``console_signal_flow.png``: the channel strip and the master bus.
- ``method1_data.png``: how training Method 1 makes (input, reference, target) examples.

Licence of the figures: CC BY 4.0 (like the book text).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DPI = 150
# One colour per kind of block, the same in every figure.
COLOURS = {
    "track": "#cfe2f3",      # audio tracks / multitrack input
    "reference": "#fce5cd",  # reference mix
    "network": "#d9d2e9",    # encoders, transformer, MLPs
    "params": "#d9ead3",     # parameters in [0, 1]
    "console": "#e8e8e8",    # effects of the mixing console
    "mix": "#fff2cc",        # rendered mixes
    "loss": "#f4cccc",       # losses
}
EDGE = "#333333"
# Fixed metadata: PNGs are byte-identical from run to run.
METADATA = {"Software": None}


def box(ax, x: float, y: float, w: float, h: float, text: str, kind: str, fontsize: float = 10,
        bold: bool = False) -> tuple[float, float, float, float]:
    """Draw a rounded box centred at (x, y) of size w x h; return its (x, y, w, h)."""
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                           facecolor=COLOURS[kind], edgecolor=EDGE, linewidth=1.2)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, weight="bold" if bold else "normal",
            wrap=False, linespacing=1.25)
    return x, y, w, h


def arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str | None = None,
          style: str = "-|>", colour: str = EDGE, dashed: bool = False, rad: float = 0.0,
          text_offset: tuple[float, float] = (0.0, 0.12), fontsize: float = 8.5) -> None:
    """Arrow from ``start`` to ``end`` (data coordinates), with an optional label near its middle."""
    patch = FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, color=colour, linewidth=1.3,
                            linestyle="--" if dashed else "-", connectionstyle=f"arc3,rad={rad}",
                            shrinkA=0, shrinkB=0)
    ax.add_patch(patch)
    if text:
        mx, my = (start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1]
        ax.text(mx, my, text, ha="center", va="center", fontsize=fontsize, color=colour,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.5))


def right(b): return (b[0] + b[2] / 2, b[1])
def left(b): return (b[0] - b[2] / 2, b[1])
def top(b): return (b[0], b[1] + b[3] / 2)
def bottom(b): return (b[0], b[1] - b[3] / 2)


def canvas(width: float, height: float, xlim: float, ylim: float, title: str):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, xlim)
    ax.set_ylim(0, ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=13, weight="bold", pad=8)
    return fig, ax


def legend(ax, kinds: dict[str, str], x: float, y: float) -> None:
    """A row of colour swatches with labels, starting at (x, y) in data coordinates."""
    for kind, label in kinds.items():
        ax.add_patch(FancyBboxPatch((x, y - 0.12), 0.35, 0.24, boxstyle="round,pad=0.01",
                                    facecolor=COLOURS[kind], edgecolor=EDGE, linewidth=0.8))
        ax.text(x + 0.45, y, label, va="center", fontsize=8.5)
        x += 0.45 + 0.14 * len(label) + 0.6


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.15, metadata=METADATA)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


# ---------------------------------------------------------------------------- figures


def diffmst_overview(path: Path) -> None:
    """Tracks + reference -> encoders -> transformer -> MLPs -> params -> console -> mix; loss."""
    fig, ax = canvas(13, 6.2, 20.4, 9.0, "Diff-MST: differentiable mixing style transfer")
    tracks = box(ax, 1.5, 7.0, 2.4, 1.4, "T mono tracks\n$x_1, \\dots, x_T$", "track")
    ref = box(ax, 1.5, 3.8, 2.4, 1.2, "reference mix\n(stereo: L, R)", "reference")
    enc_t = box(ax, 5.1, 7.0, 3.0, 1.3, "track encoder\nSTFT \u2192 CNN \u2192 linear\n(one vector per track)",
                "network", 8.5)
    enc_r = box(ax, 5.1, 3.8, 3.0, 1.3, "reference encoder\nSTFT \u2192 CNN \u2192 linear\n(one vector per channel)",
                "network", 8.5)
    arrow(ax, right(tracks), left(enc_t))
    arrow(ax, right(ref), left(enc_r))

    # The transformer and its row of tokens.
    tx, ty, tw, th = 10.4, 5.4, 5.2, 4.6
    box(ax, tx, ty, tw, th, "", "network")
    ax.text(tx, ty + th / 2 - 0.4, "transformer encoder", ha="center", va="center", fontsize=10.5, weight="bold")
    ax.text(tx, ty + th / 2 - 0.7, "no positional encoding:\ntrack order does not matter", ha="center",
            va="top", fontsize=7.8)
    tokens = ["$t_1$", "\u2026", "$t_T$", "ref$_L$", "ref$_R$", "master"]
    kinds = ["track", "track", "track", "reference", "reference", "params"]
    xs = [tx - 2.0 + i * 0.8 for i in range(len(tokens))]
    for xk, tok, kind in zip(xs, tokens, kinds):
        box(ax, xk, ty + 0.2, 0.74, 0.6, tok, kind, 6.9)
    for xk in xs:
        ax.annotate("", (xk, ty - 1.0), (xk, ty - 0.15), arrowprops=dict(arrowstyle="<->", color="#666666", lw=0.7))
    ax.text(tx, ty - 1.35, "self-attention over all tokens", ha="center", fontsize=8, style="italic")
    ax.text(tx, ty - 1.75, "master = a learned token", ha="center", fontsize=7.8, color="#555555")
    arrow(ax, right(enc_t), (tx - tw / 2, 6.6))
    arrow(ax, right(enc_r), (tx - tw / 2, 4.2))

    mlp_t = box(ax, 15.3, 7.0, 2.6, 1.2, "track MLP\n(shared by all\ntrack tokens)", "network", 8.5)
    mlp_m = box(ax, 15.3, 3.8, 2.6, 1.2, "master MLP\n(master token)", "network", 8.5)
    arrow(ax, (tx + tw / 2, 7.0), left(mlp_t))
    arrow(ax, (tx + tw / 2, 3.8), left(mlp_m))
    params = box(ax, 18.8, 5.4, 2.4, 2.4, "parameters\nin [0, 1]\n\nT \u00d7 26 (tracks)\n26 (master)", "params", 9)
    arrow(ax, right(mlp_t), (params[0] - 1.2, 6.2), rad=-0.15)
    arrow(ax, right(mlp_m), (params[0] - 1.2, 4.6), rad=0.15)

    # Bottom row: console -> mix -> loss <- reference.
    console = box(ax, 15.3, 1.3, 4.0, 1.2, "differentiable mixing console\n(to physical units, render)", "console", 9)
    arrow(ax, bottom(params), right(console), rad=-0.3)
    mix = box(ax, 9.6, 1.3, 2.2, 1.0, "predicted mix\n(stereo)", "mix", 9.5)
    arrow(ax, left(console), right(mix))
    loss = box(ax, 4.6, 1.3, 2.8, 1.0, "style loss\nAF and/or MRSTFT", "loss", 9)
    arrow(ax, left(mix), right(loss))
    arrow(ax, bottom(ref), (loss[0] - 0.9, loss[1] + 0.5), "compare", dashed=True, colour="#aa3333",
          text_offset=(-0.6, 0.0))
    ax.text(7.1, 2.15, "gradients flow back through console and network", ha="center", fontsize=8,
            color="#aa3333", style="italic")
    # The tracks themselves also go to the console: route around the left edge and below everything.
    x0, y0 = 0.15, 0.25
    ax.plot([tracks[0] - 1.2, x0, x0, console[0]], [tracks[1], tracks[1], y0, y0], color=EDGE, lw=1.3)
    arrow(ax, (console[0], y0), bottom(console))
    ax.text(9.6, y0, "the tracks' audio", ha="center", va="center", fontsize=8,
            bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    legend(ax, {"track": "tracks", "reference": "reference", "network": "network", "params": "parameters",
                "console": "console", "mix": "mix", "loss": "loss"}, 2.2, 8.55)
    save(fig, path)


def console_signal_flow(path: Path) -> None:
    """Per-track channel strips summed to the stereo master bus."""
    fig, ax = canvas(13, 5.6, 20.0, 8.6, "The differentiable mixing console: signal flow")
    strip = [("gain\n\u221248 \u2026 +24 dB", 1.8), ("6-band PEQ\nshelf, 4 peaks, shelf", 2.4),
             ("compressor\nthreshold, ratio, attack,\nrelease, knee, makeup", 2.9), ("pan\n\u22124.5 dB law", 1.7)]
    rows = [(7.0, "track 1"), (5.3, "track 2"), (2.9, "track T")]
    ends = []
    for y, name in rows:
        prev, x = box(ax, 1.1, y, 1.8, 0.95, f"{name}\n(mono)", "track", 9), 2.6
        for label, w in strip:
            b = box(ax, x + w / 2, y, w, 1.2, label, "console", 8.3)
            arrow(ax, right(prev), left(b))
            prev, x = b, x + w + 0.45
        ends.append(right(prev))
    ax.text(7.0, 4.1, "\u22ee", fontsize=20, ha="center", va="center")
    ax.text(7.0, 8.15, "channel strip: the same effects for every track, each track with its own settings",
            ha="center", fontsize=9, style="italic")
    bus_x = 13.7
    bus = box(ax, bus_x, 5.0, 1.0, 5.0, "sum\n(L, R)", "mix", 9)
    for ex, ey in ends:
        arrow(ax, (ex, ey), (bus_x - 0.5, ey))
    # Master bus row: bus -> down -> left -> into the input gain.
    master = [("input gain\n\u00b124 dB", 1.9), ("stereo PEQ\n6 bands", 1.9), ("stereo-linked\ncompressor", 2.2),
              ("output gain\n\u00b124 dB", 1.9)]
    y, x = 0.75, 3.0
    blocks = []
    for label, w in master:
        b = box(ax, x + w / 2, y, w, 1.05, label, "console", 8.5)
        if blocks:
            arrow(ax, right(blocks[-1]), left(b))
        blocks.append(b)
        x += w + 0.45
    route_y, route_x = 1.65, 2.3
    ax.plot([bus_x, bus_x, route_x, route_x], [bus[1] - bus[3] / 2, route_y, route_y, y], color=EDGE, lw=1.3)
    arrow(ax, (route_x, y), left(blocks[0]))
    ax.text(8.0, route_y + 0.2, "master bus (stereo)", ha="center", fontsize=9, style="italic")
    out = box(ax, 17.0, y, 1.9, 1.05, "stereo mix", "mix", 9.5)
    arrow(ax, right(blocks[-1]), left(out))
    ax.text(17.6, 5.0, "26 parameters per\ntrack and 26 for\nthe master bus,\nall set from\nnumbers in [0, 1]",
            ha="center", va="center", fontsize=9,
            bbox=dict(boxstyle="round", facecolor=COLOURS["params"], edgecolor=EDGE))
    save(fig, path)


def method1_data(path: Path) -> None:
    """Training Method 1: random mix of one song, split into halves A (reference) and B (input/target)."""
    fig, ax = canvas(13, 5.0, 20.0, 7.6, "Training Method 1: self-supervised examples from one song")
    src = box(ax, 1.7, 3.5, 2.8, 2.0, "one song's\ntracks\n(a segment of t s)", "track", 10)
    rnd = box(ax, 5.6, 3.5, 2.6, 1.6, "mixing console\nwith random\nsettings", "console", 9.5)
    arrow(ax, right(src), left(rnd))
    ax.text(5.6, 1.75, "random parameters\n(the 'engineer')", ha="center", va="center", fontsize=8.5,
            bbox=dict(boxstyle="round", facecolor=COLOURS["params"], edgecolor=EDGE))
    arrow(ax, (5.6, 2.2), bottom(rnd))
    mix = box(ax, 9.3, 3.5, 2.4, 1.4, "random mix\n(stereo, t s)", "mix", 10)
    arrow(ax, right(rnd), left(mix))
    ax.text(13.45, 6.3, "split in time: first half A, second half B (t/2 s each)", ha="center", fontsize=9,
            style="italic")
    a_tr = box(ax, 12.4, 5.4, 2.0, 0.9, "tracks A\n(not used)", "track", 8.5)
    a_tr_patch = ax.patches[-1]
    a_tr_patch.set_alpha(0.45)
    b_tr = box(ax, 14.5, 5.4, 2.0, 0.9, "tracks B", "track", 9)
    a_mx = box(ax, 12.4, 3.5, 2.0, 0.9, "mix A", "mix", 9)
    b_mx = box(ax, 14.5, 3.5, 2.0, 0.9, "mix B", "mix", 9)
    ax.plot([13.45, 13.45], [2.85, 6.2], color="#999999", lw=1, ls=":")
    arrow(ax, top(src), left(a_tr), "the same tracks", rad=-0.25, text_offset=(0, 1.05))
    arrow(ax, right(mix), left(a_mx))
    inp = box(ax, 18.4, 5.4, 2.4, 0.9, "input tracks", "track", 9.5, bold=True)
    tgt = box(ax, 18.4, 3.5, 2.4, 0.9, "target", "loss", 9.5, bold=True)
    ref = box(ax, 18.4, 1.6, 2.4, 0.9, "reference", "reference", 9.5, bold=True)
    arrow(ax, right(b_tr), left(inp))
    arrow(ax, bottom(a_mx), left(ref), rad=0.3)
    arrow(ax, right(b_mx), left(tgt))
    ax.text(14.8, 0.45, "the model mixes tracks B in the style of mix A; its output is compared with mix B\n"
            "(same content, so the MRSTFT loss can be used)", ha="center", fontsize=8.5)
    legend(ax, {"track": "tracks", "console": "console", "params": "parameters", "mix": "mix",
                "reference": "reference", "loss": "target"}, 0.4, 7.3)
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "figures", help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    plt.rcParams.update({"font.family": "DejaVu Sans", "svg.hashsalt": "diffmst", "path.simplify": True})
    diffmst_overview(args.out / "diffmst_overview.png")
    console_signal_flow(args.out / "console_signal_flow.png")
    method1_data(args.out / "method1_data.png")


if __name__ == "__main__":
    main()
