"""Figures: a ratio of two measured quantities against its goal, printed, tabled and saved as JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def median(values: Sequence[float]) -> float:
    """The median (the figure reported for a set of trials)."""
    return float(statistics.median(values))


@dataclass(frozen=True)
class Goal:
    """A ratio's goal: ``ratio >= value`` (``at_least``) or ``ratio <= value``."""

    value: float
    at_least: bool = True

    def met_by(self, ratio: float) -> bool:
        """Whether ``ratio`` meets the goal."""
        return ratio >= self.value if self.at_least else ratio <= self.value

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.value:g}"


@dataclass
class Figure:
    """One benchmark's outcome: two measured quantities and their ratio against the goal.

    Contenders run as interleaved pairs, so ``ratio`` is the median of the per-trial ratios
    ``measured[i] / baseline[i]`` (two runs a few seconds apart share the machine's load);
    ``measured`` and ``baseline`` are the medians of each side. ``trials`` keeps every raw value.
    """

    id: str
    title: str
    measured_name: str
    baseline_name: str
    unit: str
    measured: float
    baseline: float
    ratio: float
    goal: Goal
    size: dict[str, object]
    trials: dict[str, list[float]]
    notes: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_trials(
        cls, id: str, title: str, measured_name: str, baseline_name: str, unit: str,
        trials: dict[str, list[float]], goal: Goal, size: dict[str, object],
        notes: dict[str, object] | None = None,
    ) -> Figure:
        """Build the figure from paired trial values (rates or durations, ``unit`` says which)."""
        measured, baseline = trials[measured_name], trials[baseline_name]
        ratios = [m / b for m, b in zip(measured, baseline, strict=True)]
        return cls(
            id=id, title=title, measured_name=measured_name, baseline_name=baseline_name, unit=unit,
            measured=median(measured), baseline=median(baseline), ratio=median(ratios), goal=goal, size=size,
            trials={measured_name: measured, baseline_name: baseline},
            notes={"per_trial_ratios": [round(r, 3) for r in ratios],
                   "ratio_of_medians": round(median(measured) / median(baseline), 3), **(notes or {})},
        )

    @property
    def passed(self) -> bool:
        """Whether the ratio meets the goal."""
        return self.goal.met_by(self.ratio)

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict, with the goal spelled out and the pass/fail verdict."""
        data = asdict(self)
        data["goal"] = str(self.goal)
        data["passed"] = self.passed
        return data


def machine() -> dict[str, object]:
    """Where the figures were measured: CPU, cores, load, versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import dagster
    import numpy
    import pandas
    import pyarrow

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "python": platform.python_version(),
        "pandas": pandas.__version__,
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "dagster": dagster.__version__,
        "platform": platform.platform(),
    }


def write_results(figures: Sequence[Figure], context: dict[str, object]) -> Path:
    """Write ``bench/results/<utc-stamp>.json`` with the machine, the mode and every figure."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{stamp}.json"
    payload = {"measured_at": stamp, **context, "figures": [f.as_json() for f in figures]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:,.0f} {unit}"


def render_table(figures: Sequence[Figure]) -> str:
    """A Markdown table: id, figure, measured, baseline, ratio, goal, verdict."""
    rows = ["| id | figure | measured | baseline | ratio | goal | result |", "|---|---|---|---|---|---|---|"]
    for f in figures:
        rows.append(
            f"| {f.id} | {f.title} | {f.measured_name}: {_fmt(f.measured, f.unit)} | "
            f"{f.baseline_name}: {_fmt(f.baseline, f.unit)} | {f.ratio:.2f} | {f.goal} | "
            f"{'PASS' if f.passed else 'MISS'} |"
        )
    return "\n".join(rows)


def report(figure: Figure) -> None:
    """Print one figure as soon as it is measured (raw trials, medians, ratio, goal, verdict)."""
    print(f"\n{figure.id}: {figure.title}  size={figure.size}")
    for name, values in figure.trials.items():
        shown = ", ".join(_fmt(v, figure.unit) for v in values)
        print(f"  {name:<28} trials: {shown}")
    print(f"  {figure.measured_name}: {_fmt(figure.measured, figure.unit)}   "
          f"{figure.baseline_name}: {_fmt(figure.baseline, figure.unit)}")
    print(f"  ratio {figure.ratio:.3f}   goal {figure.goal}   {'PASS' if figure.passed else 'MISS'}")
    for key, value in figure.notes.items():
        print(f"  {key}: {value}")
