"""PNG plots of evaluation results: BLEU by source length, attention heatmaps, and their TensorBoard copies.

Figures are built with the object API on an Agg canvas (no pyplot state, no display needed), so plotting
works headless, from threads, and never leaks figures between calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG at exactly figsize * DPI pixels (no tight cropping, so sizes are predictable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


class BleuRow(Protocol):
    """A point of `plot_bleu_by_length`: a bucket's label and size, its BLEU and interval (None: none). The
    rows of `nmt.metrics.bleu_by_length` are such points."""

    @property
    def label(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def bleu(self) -> float | None: ...
    @property
    def bleu_ci(self) -> Sequence[float] | None: ...


@dataclass
class BleuPoint:
    """A `BleuRow` made for a plot (a level, a mean over seeds)."""

    label: str
    count: int
    bleu: float | None
    bleu_ci: list[float] | None


def plot_bleu_by_length(
    systems: Mapping[str, Sequence[BleuRow]],
    title: str = "BLEU by source sentence length",
    size: tuple[float, float] = (7.0, 4.5),
) -> Figure:
    """One line per system: x = source-length bucket, y = BLEU, bars = 95% bootstrap interval.

    `systems` maps a system name to its `bleu_by_length` rows. Empty buckets leave a gap in the line; the
    x labels carry each bucket's sentence count (from the first system, all share the same source side).
    """
    fig = new_figure(*size)
    ax = fig.add_subplot(1, 1, 1)
    first = next(iter(systems.values()), [])
    x = np.arange(len(first))
    for i, (name, rows) in enumerate(systems.items()):
        y = np.array([np.nan if r.bleu is None else r.bleu for r in rows], dtype=float)
        lower = np.array([np.nan if r.bleu_ci is None else r.bleu_ci[0] for r in rows], dtype=float)
        upper = np.array([np.nan if r.bleu_ci is None else r.bleu_ci[1] for r in rows], dtype=float)
        # A few-point horizontal shift keeps overlapping interval bars of several systems apart.
        shift = (i - (len(systems) - 1) / 2) * 0.06
        # A percentile interval of BLEU need not contain the corpus BLEU (tiny buckets): clip, never negative.
        yerr = np.clip(np.vstack([np.nan_to_num(y - lower), np.nan_to_num(upper - y)]), 0.0, None)
        ax.errorbar(x + shift, y, yerr=yerr, marker="o", capsize=3, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r.label}\n(n={r.count})" for r in first], fontsize=8)
    return _finish(fig, ax, "source length (words)", "BLEU", title, legend=bool(systems))


def plot_lines(
    lines: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    labels: Sequence[str],
    xlabel: str,
    ylabel: str,
    title: str,
    reference: float | None = None,
    size: tuple[float, float] = (7.0, 4.5),
) -> Figure:
    """One line per entry of `lines` over the categories `labels`: label -> (values, error-bar half-widths); NaN
    values are gaps. `reference` draws a dotted horizontal line (e.g. 1 = nothing lost)."""
    fig = new_figure(*size)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    for i, (name, (values, errors)) in enumerate(lines.items()):
        offset = (i - (len(lines) - 1) / 2) * 0.04  # spread the error bars a little
        ax.errorbar(x + offset, values, yerr=errors, marker="o", capsize=3, label=name)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(x)
    ax.set_xticklabels(labels)
    return _finish(fig, ax, xlabel, ylabel, title, legend=bool(lines))


@dataclass
class TrajectorySeries:
    """One run followed over training (`plot_trajectories`): per kept checkpoint, its update, valid k = 1 quality,
    retention, delta NLL, alignment (None: no attention) and whether it enters the matched comparison."""

    label: str
    system: str
    step: list[int]
    quality: list[float]
    retained: list[float | None]
    delta_nll: list[float]
    alignment: list[float | None]
    aligned: list[bool]


def plot_trajectories(series: Sequence[TrajectorySeries], title: str, overlap: Sequence[float] | None = None,
                      min_alignment: float | None = None) -> Figure:
    """Three panels: retention and delta NLL against valid k = 1 BLEU (every checkpoint of every run; one colour
    per system, one marker per seed; hollow: not aligned), and alignment against the update. `overlap` shades the
    quality range both models cover; `min_alignment` is drawn as a dotted line."""
    fig = new_figure(15.0, 4.8)
    axes = [fig.add_subplot(1, 3, i) for i in (1, 2, 3)]
    systems = list(dict.fromkeys(s.system for s in series))
    colours = {name: f"C{i}" for i, name in enumerate(systems)}
    markers = "osD^v<>"
    seeds: dict[str, int] = {}
    for s in series:
        marker = markers[seeds.setdefault(s.label.split(",")[-1], len(seeds)) % len(markers)]
        order = np.argsort(s.quality)
        for ax, values in ((axes[0], s.retained), (axes[1], s.delta_nll)):
            xs = np.array(s.quality)[order]
            ys = np.array([np.nan if values[i] is None else values[i] for i in order], dtype=float)
            ax.plot(xs, ys, color=colours[s.system], alpha=0.4, linewidth=1)
            for i in order:
                if values[i] is not None:
                    ax.scatter(s.quality[i], values[i], marker=marker, s=22, edgecolors=colours[s.system],
                               facecolors=colours[s.system] if s.aligned[i] else "none")
        axes[0].plot([], [], color=colours[s.system], marker=marker, linestyle="-", label=s.label)
        if any(a is not None for a in s.alignment):
            axes[2].plot(s.step, [np.nan if a is None else a for a in s.alignment], color=colours[s.system],
                         marker=marker, markersize=4, label=s.label)
    for ax in axes[:2]:
        if overlap:
            ax.axvspan(overlap[0], overlap[1], color="grey", alpha=0.12, label="compared (both models)")
    axes[0].axhline(1.0, color="grey", linestyle=":", linewidth=1)
    if min_alignment is not None:
        axes[2].axhline(min_alignment, color="grey", linestyle=":", linewidth=1, label="aligns from here")
    for ax, (xlabel, ylabel) in zip(axes, [("valid k = 1 BLEU", "BLEU kept at the longest level"),
                                           ("valid k = 1 BLEU", "reference NLL per token: longest - k = 1"),
                                           ("update", "segment alignment (attention)")], strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _finish(fig: Figure, ax: Any, xlabel: str, ylabel: str, title: str, legend: bool) -> Figure:
    """Labels, title, a light grid and the legend of a one-panel line plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def attention_figsize(src_len: int, tgt_len: int) -> tuple[float, float]:
    """Figure size in inches for a (tgt_len, src_len) heatmap: about 0.3 inch per token, clamped."""
    width = min(max(3.0 + 0.3 * src_len, 4.0), 24.0)
    height = min(max(2.0 + 0.3 * tgt_len, 3.0), 24.0)
    return width, height


def _heatmap(ax: Any, weights: np.ndarray, src_labels: Sequence[str], tgt_labels: Sequence[str]) -> Any:
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(weights.shape[1]))
    ax.set_xticklabels(list(src_labels), rotation=90, fontsize=7)
    ax.set_yticks(range(weights.shape[0]))
    ax.set_yticklabels(list(tgt_labels), fontsize=7)
    return image


def _fit_labels(labels: Sequence[str], n: int) -> list[str]:
    """Exactly n tick labels: extra labels dropped, missing ones numbered (a re-encoded piece sequence can
    differ in length from the decoded ids)."""
    labels = list(labels)[:n]
    return labels + [str(i) for i in range(len(labels), n)]


def plot_attention(
    weights: torch.Tensor | np.ndarray,
    src_labels: Sequence[str],
    tgt_labels: Sequence[str],
    title: str = "",
    size: tuple[float, float] | None = None,
) -> Figure:
    """Heatmap of attention weights (tgt_len, src_len): rows = target pieces, columns = source pieces."""
    w = torch.as_tensor(weights).detach().float().cpu().numpy()
    fig = new_figure(*(size or attention_figsize(w.shape[1], w.shape[0])))
    ax = fig.add_subplot(1, 1, 1)
    image = _heatmap(ax, w, _fit_labels(src_labels, w.shape[1]), _fit_labels(tgt_labels, w.shape[0]))
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def plot_attention_heads(
    weights: torch.Tensor | np.ndarray,
    src_labels: Sequence[str],
    tgt_labels: Sequence[str],
    title: str = "",
) -> Figure:
    """Grid of per-head heatmaps from weights (heads, tgt_len, src_len)."""
    w = torch.as_tensor(weights).detach().float().cpu().numpy()
    heads, tgt_len, src_len = w.shape
    cols = min(4, heads)
    rows = math.ceil(heads / cols)
    cell_w, cell_h = attention_figsize(src_len, tgt_len)
    fig = new_figure(min(cell_w * cols, 40.0), min(cell_h * rows, 40.0))
    src_labels, tgt_labels = _fit_labels(src_labels, src_len), _fit_labels(tgt_labels, tgt_len)
    for h in range(heads):
        ax = fig.add_subplot(rows, cols, h + 1)
        _heatmap(ax, w[h], src_labels, tgt_labels)
        ax.set_title(f"head {h}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def log_to_tensorboard(
    log_dir: str | Path,
    figures: Mapping[str, Figure] | None = None,
    scalars: Mapping[str, float] | None = None,
    step: int = 0,
) -> None:
    """Write figures (as images) and scalars under `log_dir` for TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter  # heavy (tensorboard): loaded only when used

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, value in (scalars or {}).items():
            writer.add_scalar(tag, value, global_step=step)
        for tag, fig in (figures or {}).items():
            # close=False: the caller still owns the figure (it may also be saved as PNG).
            writer.add_figure(tag, fig, global_step=step, close=False)
    finally:
        writer.close()
