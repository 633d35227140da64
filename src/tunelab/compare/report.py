"""The comparison as a page (``report.html``) and as a terminal table.

The page is one self-contained file that opens from disk and makes no request: CSS inline, the
plots embedded as base64 PNGs (copies beside it: loss_curves.png, metric_vs_trainable.png,
memory.png, time.png). It shows the environment, the table ranked by the primary metric (failed
entries last, with their error), every entry's training loss curve, the metric against the share
of parameters that trained (log scale; an entry that trains nothing, share 0, is drawn at
``zero_share_floor``: a tenth of the smallest nonzero share, 1e-6 where there is none, and the plot
says so), peak memory and training time, and each entry's resolved config (its config.yaml).
Everything that comes from user data is HTML-escaped. Plots use matplotlib's Agg canvas, without
pyplot, so no display and no global backend are involved.

This module draws records; reading them from run folders is ``tunelab.compare.results``.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import yaml

from tunelab.atomic import write_bytes_atomic, write_text_atomic
from tunelab.compare.recommend import pareto_front, recommend
from tunelab.compare.results import FINISHED, Metric, metric_value, primary_metric, sort_records
from tunelab.compare.seeds import fold_seeds
from tunelab.run_files import RUN_CONFIG_FILE
from tunelab.runs.run_directory import RunDirectory

REPORT_FILE = "report.html"
PLOT_FILES = ("loss_curves.png", "metric_vs_trainable.png", "memory.png", "time.png")
MIB = 2**20
DEFAULT_ZERO_SHARE_FLOOR = 1e-6

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .environment { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
tr.failed td { color: #a00; } tr.not_run td { color: #888; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; } .plots figure { margin: 0; }
.plots img { max-width: 34rem; border: 1px solid #eee; } figcaption { font-size: 0.85rem; color: #555; }
.scroll { overflow-x: auto; max-width: 100%; }
pre { background: #f8f8f8; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
"""


def _finished(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in records if record.get("status") == FINISHED]


def _percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.3g}"


def _mib(value: float | None) -> str:
    return "" if value is None else f"{value / MIB:,.0f}"


def _figure(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _status_text(record: dict[str, Any]) -> str:
    status = str(record.get("status"))
    if record.get("tied"):
        status += " (tied with the best)"
    if record.get("seeds"):
        status += f", {len(record['seeds'])} seeds"
    return f"{status}: {record['error']}" if record.get("error") else status


def _count(value: float | None) -> str:
    """A parameter count the way people say it: 1.2M, 340K, 950."""
    if value is None:
        return ""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.0f}"


# Shown beside the ranking metric in the terminal table when entries have it.
COMPANION_METRICS = {"accuracy": "macro_f1", "json_f1": "json_validity", "exact_match": "rouge_l"}


def _tuning_text(record: dict[str, Any]) -> str:
    tuning = record.get("tuning")
    if not tuning:
        return ""
    figure = tuning["ranked_by"]
    trials = ", ".join(f"{trial['lr']:g}: {trial.get(figure, float('nan')):.4f}" for trial in tuning["trials"])
    return f"{tuning['chosen']:g} (validation {figure}: {trials}; {tuning['tuning_time_s']:.1f} s)"


def _with_spread(record: dict[str, Any], metric: Metric | None) -> str:
    """The metric, and where the entry ran with several seeds, +- its standard deviation."""
    value = _figure(metric_value(record, metric))
    spread = (record.get("metric_std") or {}).get(metric.name) if metric and value else None
    return f"{value} ± {spread:.4f}" if spread is not None else value


def format_table(records: list[dict[str, Any]]) -> str:
    """Aligned columns for the terminal: name, method, the ranking metric (and its companion),
    trainable parameters and share, tokens trained on, peak memory MiB, time s, status."""
    records = fold_seeds(records)  # several seeds: one row per entry, mean +- standard deviation
    metric = primary_metric(records)
    companion = COMPANION_METRICS.get(metric.name) if metric else None
    if companion and not any(metric_value(record, Metric(companion, True)) is not None for record in records):
        companion = None
    header = ["name", "method", metric.name if metric else "metric"]
    header += [companion] if companion else []
    tuned = any(record.get("tuning") for record in records)
    header += ["trainable", "trainable %", "tokens", "peak MiB", "time s"]
    header += ["tuned lr", "tuning s", "status"] if tuned else ["status"]
    rows = []
    for record in sort_records(records, metric):
        row = [str(record.get("name")), str(record.get("method") or ""), _with_spread(record, metric)]
        row += [_figure(metric_value(record, Metric(companion, True)))] if companion else []
        row += [
            _count(record.get("trainable_params")),
            _percent(record.get("trainable_share")),
            _count(record.get("tokens_seen")),
            _mib(record.get("peak_memory_bytes")),
            _figure(record.get("train_time_s"), 1),
        ]
        if tuned:
            tuning = record.get("tuning") or {}
            row += [f"{tuning['chosen']:g}" if tuning else "", _figure(tuning.get("tuning_time_s"), 1)]
        row += [_status_text(record)]
        rows.append(row)
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(width) if index < 2 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row[:-1], widths, strict=True))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


# --- plots -------------------------------------------------------------------------------------


def _new_figure(width: float = 6.4, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _colors(records: list[dict[str, Any]]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {str(record.get("name")): palette(index % 10) for index, record in enumerate(records)}


def _empty_note(axes: Any, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="#777")


def loss_curves_png(records: list[dict[str, Any]], colors: dict[str, Any]) -> bytes:
    """Every entry's training loss by step, from its metrics.jsonl (evaluation loss as dots)."""
    figure = _new_figure()
    axes = figure.add_subplot()
    drawn = False
    for record in records:
        logged = RunDirectory(record["run_dir"]).read_metrics() if record.get("run_dir") else []
        points = [(line["step"], line["loss"]) for line in logged if "step" in line and "loss" in line]
        if not points:
            continue
        name = str(record.get("name"))
        axes.plot(*zip(*points, strict=True), label=name, color=colors[name], marker="." if len(points) < 20 else None)
        evaluated = [(line["step"], line["eval_loss"]) for line in logged if line.get("eval_loss") is not None]
        if evaluated:
            axes.scatter(*zip(*evaluated, strict=True), color=colors[name], marker="o", facecolors="none")
        drawn = True
    axes.set(title="Training loss (circles: evaluation loss)", xlabel="step", ylabel="loss")
    if drawn:
        axes.legend(fontsize="small")
    else:
        _empty_note(axes, "no metrics logged")
    return _png(figure)


def zero_share_floor(records: list[dict[str, Any]]) -> float:
    """Where an entry that trains nothing sits on the log axis: a tenth of the smallest nonzero share."""
    shares = [r["trainable_share"] for r in _finished(records) if (r.get("trainable_share") or 0) > 0]
    return min(shares) / 10 if shares else DEFAULT_ZERO_SHARE_FLOOR


def metric_vs_trainable_png(records: list[dict[str, Any]], metric: Metric | None, colors: dict[str, Any]) -> bytes:
    """The ranking metric against the share of parameters that trained (log scale), with the
    Pareto front drawn through the entries that no other beats on both."""
    from matplotlib.ticker import NullFormatter

    figure = _new_figure()
    axes = figure.add_subplot()
    floor = zero_share_floor(records)
    placed = [
        (record, share, value)
        for record in _finished(records)
        if (share := record.get("trainable_share")) is not None and (value := metric_value(record, metric)) is not None
    ]
    for record, share, value in placed:
        name = str(record.get("name"))
        x = share if share > 0 else floor
        axes.scatter([x], [value], color=colors[name], marker="o" if share > 0 else "x", s=50)
        axes.annotate(name, (x, value), textcoords="offset points", xytext=(5, 4), fontsize="small")
    if metric is not None and len(placed) > 1:  # the entries nothing beats on both metric and share
        points = {str(r.get("name")): (s if s > 0 else floor, v) for r, s, v in placed}
        front = pareto_front([(name, y, x) for name, (x, y) in points.items()], metric)
        if len(front) > 1:
            xs, ys = zip(*sorted(points[name] for name in front), strict=True)
            axes.plot(xs, ys, linestyle="--", color="0.5", linewidth=1, zorder=0, label="Pareto front")
            axes.legend(loc="lower right", fontsize="small")
    axes.set_xscale("log")
    axes.xaxis.set_minor_formatter(NullFormatter())  # minor labels crowd a short log axis
    axes.margins(x=0.25, y=0.15)
    axes.set(title=f"{metric.name if metric else 'metric'} vs trainable share", xlabel="trainable share (log)")
    axes.set_ylabel(metric.label if metric else "")
    if any(share == 0 for _, share, _ in placed):
        axes.text(0.01, 0.01, f"x: trains nothing, drawn at {floor:.0e}", transform=axes.transAxes, fontsize="small")
    if not placed:
        _empty_note(axes, "no finished entries")
    return _png(figure)


def bars_png(records: list[dict[str, Any]], key: str, scale: float, title: str, colors: dict[str, Any]) -> bytes:
    """One horizontal bar per finished entry (best ranked at the top)."""
    shown = [record for record in _finished(records) if record.get(key) is not None]
    figure = _new_figure(height=max(2.5, 0.8 + 0.35 * len(shown)))
    axes = figure.add_subplot()
    names = [str(record.get("name")) for record in shown]
    axes.barh(names, [record[key] / scale for record in shown], color=[colors[name] for name in names])
    axes.invert_yaxis()
    axes.set(title=title, xlabel=title)
    if not shown:
        _empty_note(axes, "no finished entries")
    return _png(figure)


def _plots(records: list[dict[str, Any]], metric: Metric | None) -> dict[str, bytes]:
    colors = _colors(records)
    return {
        "loss_curves.png": loss_curves_png(records, colors),
        "metric_vs_trainable.png": metric_vs_trainable_png(records, metric, colors),
        "memory.png": bars_png(records, "peak_memory_bytes", MIB, "peak memory (MiB)", colors),
        "time.png": bars_png(records, "train_time_s", 1.0, "train time (s)", colors),
    }


# --- page --------------------------------------------------------------------------------------


def _escape(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _environment_line(environment: dict[str, Any]) -> str:
    parts = [f"{key} {value}" for key, value in environment.items() if value not in (None, "")]
    gpu = "" if environment.get("gpu") else " · no GPU"
    return _escape(" · ".join(parts) + gpu)


def _extra_metric_names(records: list[dict[str, Any]], metric: Metric | None) -> list[str]:
    """Scalar task metrics besides the ranking one, in first-seen order."""
    names: list[str] = []
    for record in _finished(records):
        for name, value in (record.get("metrics") or {}).items():
            if isinstance(value, int | float) and name not in names and (metric is None or name != metric.name):
                names.append(name)
    return names


def _columns(records: list[dict[str, Any]], metric: Metric | None) -> list[tuple[str, Any]]:
    """(header, cell function) of every table column."""
    losses = [name for name in ("eval_loss", "train_loss") if metric is None or name != metric.name]
    columns: list[tuple[str, Any]] = [
        ("entry", lambda r: r.get("name")),
        ("method", lambda r: r.get("method")),
    ]
    if metric is not None:
        columns.append((metric.label, lambda r: _with_spread(r, metric)))
    for name in _extra_metric_names(records, metric):
        columns.append((name, lambda r, n=name: _figure((r.get("metrics") or {}).get(n))))
    for name in losses:
        columns.append((name, lambda r, n=name: _figure(r.get(n))))
    return (
        columns
        + [
            ("trainable params", lambda r: "" if r.get("trainable_params") is None else f"{r['trainable_params']:,}"),
            ("trainable %", lambda r: _percent(r.get("trainable_share"))),
            ("peak memory MiB", lambda r: _mib(r.get("peak_memory_bytes"))),
            ("train time s", lambda r: _figure(r.get("train_time_s"), 2)),
            ("tokens trained", lambda r: _count(r.get("tokens_seen"))),
            ("lr", lambda r: "" if r.get("lr") is None else f"{r['lr']:g}"),
            ("tokens/s", lambda r: _figure(r.get("tokens_per_s"), 0)),
            ("artifact MiB", lambda r: "" if r.get("artifact_bytes") is None else f"{r['artifact_bytes'] / MIB:.2f}"),
        ]
        + ([("tuned lr (validation figure per lr)", _tuning_text)] if any(r.get("tuning") for r in records) else [])
        + [
            ("status", _status_text),
        ]
    )


def _table(records: list[dict[str, Any]], metric: Metric | None) -> str:
    columns = _columns(records, metric)
    text_columns = {"entry", "method", "status"}
    head = "".join(f'<th class="{"text" if h in text_columns else "num"}">{_escape(h)}</th>' for h, _ in columns)
    rows = []
    for rank, record in enumerate(sort_records(records, metric), start=1):
        cells = "".join(
            f'<td class="{"text" if h in text_columns else "num"}">{_escape(cell(record))}</td>' for h, cell in columns
        )
        status = _escape(record.get("status"))
        rows.append(f'<tr class="{status}" data-entry="{_escape(record.get("name"))}"><td>{rank}</td>{cells}</tr>')
    return (
        f'<table id="results"><thead><tr><th>#</th>{head}</tr></thead><tbody>\n{chr(10).join(rows)}\n</tbody></table>'
    )


def _config_text(record: dict[str, Any]) -> str:
    """A finished entry's config.yaml; of an unfinished one, only its method is known for sure."""
    config_file = Path(record.get("run_dir") or "") / RUN_CONFIG_FILE  # shown as written, comments and all
    if record.get("status") == FINISHED and config_file.is_file():
        return config_file.read_text(encoding="utf-8")
    method = {"name": record.get("method"), **(record.get("options") or {})}
    return "# the entry did not finish; its method:\n" + yaml.safe_dump({"method": method}, sort_keys=False)


def _config_blocks(records: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"<details><summary>{_escape(record.get('name'))}</summary><pre>{_escape(_config_text(record))}</pre></details>"
        for record in records
    )


def _image(png: bytes, alt: str, caption: str) -> str:
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<figure><img src="{source}" alt="{_escape(alt)}"><figcaption>{caption}</figcaption></figure>'


def _recommendation_html(entries: list[dict[str, Any]]) -> str:
    answer = recommend(entries)
    if answer is None:
        return ""
    items = "".join(f"<li>{_escape(line)}</li>" for line in answer.lines())
    return f'<section id="recommendation"><h2>Recommendation</h2><ul>{items}</ul></section>\n'


def render_html(records: list[dict[str, Any]], environment: dict[str, Any], title: str, plots: dict[str, bytes]) -> str:
    entries = fold_seeds(records)  # the table and the recommendation: one row per entry, seeds folded
    metric = primary_metric(records)
    ranked = f"ranked by {_escape(metric.label)}" if metric else "no finished entry to rank"
    floor_note = "the task metric against the share of parameters that train"
    if any(record.get("trainable_share") == 0 for record in _finished(records)):
        floor_note += f"; entries that train nothing (x) are drawn at {zero_share_floor(records):.0e}"
    images = "\n".join(
        [
            _image(plots["loss_curves.png"], "training loss curves", "training loss per step"),
            _image(plots["metric_vs_trainable.png"], "metric against trainable share", _escape(floor_note)),
            _image(plots["memory.png"], "peak memory per entry", "peak memory (CUDA allocated, or process RSS on CPU)"),
            _image(plots["time.png"], "train time per entry", "training time (the loop, without loading)"),
        ]
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_escape(title)}</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{_escape(title)}</h1>\n"
        f'<p class="environment">{_environment_line(environment)}</p>\n'
        f"{_recommendation_html(entries)}"
        f"<p>{len(records)} entries, {ranked}; failed entries last.</p>\n"
        f'<div class="scroll">{_table(entries, metric)}</div>\n'
        f'<h2>Plots</h2><div class="plots">\n{images}\n</div>\n'
        f"<h2>Configs</h2>\n{_config_blocks(records)}\n</body></html>\n"
    )


def write_report(records: list[dict[str, Any]], environment: dict[str, Any], folder: Path | str) -> Path:
    """``report.html`` and the plots' PNG copies in ``folder``; returns the page's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metric = primary_metric(records)
    ordered = sort_records(records, metric)
    plots = _plots(ordered, metric)
    for name, png in plots.items():
        write_bytes_atomic(folder / name, png)
    page = render_html(records, environment, f"tunelab comparison: {folder.name}", plots)
    write_text_atomic(folder / REPORT_FILE, page)
    return folder / REPORT_FILE
