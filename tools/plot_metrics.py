"""Plot TensorBoard scalars of one or more runs to PNG: raw values faint, smoothed solid, runs overlaid.

    .venv/bin/python tools/plot_metrics.py runs/smollm2-cpu/version_0 [more runs …] \\
        [--tags reward reward_std 'aha/*'] [--smooth 0.6] [--out DIR] [--size 1200x800] [--samples-per-step N]

A run is a folder holding ``events.out.tfevents.*`` files (a folder above several runs, such as
``runs/smollm2-cpu``, stands for each of them), or one event file. One PNG per tag, named after the tag
(``aha/reflection_rate`` → ``aha_reflection_rate.png``), in ``--out`` (default: ``plots/`` inside the first run).
Tags may be shell-style patterns. Smoothing is TensorBoard's: a debiased exponential moving average.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import sys
from pathlib import Path


def ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average divided by (1 - weight^k) so it starts unbiased.
    Non-finite values are passed through and do not disturb the average."""
    out, last, count = [], 0.0, 0
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        count += 1
        last = last * weight + (1.0 - weight) * value
        out.append(last / (1.0 - weight**count) if weight > 0 else value)
    return out


def find_runs(paths: list[Path]) -> list[tuple[str, Path]]:
    """(label, folder or event file) for each run under the given paths, in order."""
    runs = []
    for path in paths:
        if path.is_file():
            stamp = path.name.split(".")[3] if path.name.count(".") >= 3 else path.name
            runs.append((f"{path.parent.name}@{stamp}", path))
            continue
        folders = sorted({p.parent for p in path.rglob("events.out.tfevents.*")})
        for folder in folders:
            runs.append(("/".join(folder.parts[-2:]) if len(folder.parts) > 1 else folder.name, folder))
    return runs


def load_scalars(run: Path) -> dict[str, tuple[list[int], list[float]]]:
    """{tag: (steps, values)} of every scalar in a run folder or event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})  # 0 = keep every point
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        out[tag] = ([e.step for e in events], [e.value for e in events])
    return out


def x_values(steps: list[int], samples_per_step: int | None) -> list[int]:
    """The x axis: logged steps, or samples seen: logged step s is the (s + 1)-th update, so (s + 1) × the
    completions per step have been trained on by then."""
    return [(step + 1) * samples_per_step for step in steps] if samples_per_step else list(steps)


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 1200x800, got {text!r}") from None
    if width < 100 or height < 100:
        raise argparse.ArgumentTypeError(f"--size must be at least 100x100 pixels, got {text!r}")
    return width, height


def plot_tag(tag: str, series: list[tuple[str, list[int], list[float]]], smooth: float, size: tuple[int, int],
             path: Path, samples_per_step: int | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 100
    fig, ax = plt.subplots(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, steps, values) in enumerate(series):
        color = colors[k % len(colors)]
        steps = x_values(steps, samples_per_step)
        ax.plot(steps, values, color=color, alpha=0.25, linewidth=1.0)
        marker = "o" if len(steps) <= 30 else None  # sparse series (validation) stay readable
        ax.plot(steps, ema(values, smooth), color=color, linewidth=2.0, label=label, marker=marker, markersize=4)
    ax.set_title(tag)
    ax.set_xlabel(f"samples seen ({samples_per_step} completions per step)" if samples_per_step else "step")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)  # no bbox_inches="tight": the PNG is exactly --size
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (or folders above them) or event files")
    parser.add_argument("--tags", nargs="+", default=["reward", "reward_std"], help="tags or patterns to plot")
    parser.add_argument("--smooth", type=float, default=0.6, help="EMA weight in [0, 1) for the solid curve")
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: <first run>/plots)")
    parser.add_argument("--size", type=parse_size, default=(1200, 800), help="PNG size WIDTHxHEIGHT in pixels")
    parser.add_argument("--samples-per-step", type=int, default=None,
                        help="x axis in samples seen: completions per step (data.batch_size × model.num_generations; "
                             "not for runs with dynamic sampling, whose steps differ)")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401  (an extra of r1lit: only this tool draws)
    except ImportError:
        parser.error("drawing needs matplotlib, an extra of r1lit: pip install -e '.[plot]' (or pip install matplotlib)")
    if not 0 <= args.smooth < 1:
        parser.error(f"--smooth must be in [0, 1), got {args.smooth}")
    missing = [str(p) for p in args.runs if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    runs = find_runs(args.runs)
    if not runs:
        parser.error(f"no TensorBoard event files (events.out.tfevents.*) under {', '.join(map(str, args.runs))}")
    data = [(label, load_scalars(run)) for label, run in runs]
    available = sorted({tag for _, scalars in data for tag in scalars})
    tags = [t for pattern in args.tags for t in (fnmatch.filter(available, pattern) or [pattern])]
    unknown = [t for t in dict.fromkeys(tags) if t not in available]
    if unknown:
        parser.error(f"tag(s) {unknown} not found in any run; available: {', '.join(available)}")
    first = runs[0][1]
    out = args.out if args.out is not None else (first if first.is_dir() else first.parent) / "plots"
    written = []
    for tag in dict.fromkeys(tags):
        series = [(label, *scalars[tag]) for label, scalars in data if tag in scalars]
        path = out / (tag.replace("/", "_") + ".png")
        plot_tag(tag, series, args.smooth, args.size, path, args.samples_per_step)
        written.append(path)
        print(path)
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
