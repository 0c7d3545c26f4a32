"""Writes one benchmark run as bench.json, a Markdown report (bench.md) and bench.png.

bench.md starts with the machine and date it came from, then the targets,
inference, export cost (per model run, per release, constructions by call
site), network construction (fix 3 side by side) and export-all tables, so it
can be pasted into the README as it is. The chart shows the headlines:
throughput ratios of the exports to the Slim graph and to keras.applications,
per model and batch size, with the spread of the per-round ratios as error
bars, and where each model run's wall time went.
"""
from __future__ import annotations

import json
import pathlib

from bench import targets as targets_lib
from bench import workloads as workloads_lib

JSON_NAME, MARKDOWN_NAME, CHART_NAME = "bench.json", "bench.md", "bench.png"


def write_all(results: dict, output_dir: pathlib.Path) -> None:
  output_dir = pathlib.Path(output_dir)
  (output_dir / JSON_NAME).write_text(json.dumps(results, indent=1, default=str) + "\n")
  (output_dir / MARKDOWN_NAME).write_text(markdown(results))
  write_chart(results, output_dir / CHART_NAME)


# ---- Markdown.

def _stat(summary: dict | None, digits: int = 1) -> str:
  if not summary:
    return "-"
  if summary["min"] == summary["max"]:
    return f"{summary['median']:.{digits}f}"
  return (f"{summary['median']:.{digits}f} [{summary['min']:.{digits}f}–"
          f"{summary['max']:.{digits}f}]")


def _mib(n: float | None) -> str:
  return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return lines


def _machine_line(results: dict) -> str:
  m = results["machine"]
  libs = m.get("libraries", {})
  cores = m.get("usable_cores") or m.get("logical_cores")
  load = " / ".join(f"{x:.1f}" for x in (m["load_average_start"][0],
                                        m.get("load_average_end", [float("nan")])[0]))
  return (f"Measured {m['date'][:10]} on {m['cpu']} ({cores} cores usable, "
          f"{m['memory_bytes'] / 2**30:.0f} GiB), {m['platform']}; TensorFlow "
          f"{libs.get('tensorflow', '?')}, tf-keras {libs.get('tf-keras', '?')}, "
          f"tensorflow-hub {libs.get('tensorflow-hub', '?')}; git {m.get('git') or '?'}; "
          f"1-min load average at start / end {load}; the run took "
          f"{results.get('wall_seconds', 0) / 60:.1f} min.")


def _targets_section(results: dict) -> list[str]:
  rows = []
  for target in results.get("targets", []):
    status = target["status"] if target["status"] != targets_lib.MISSED else "**missed**"
    numbers = "; ".join(
        f"{c['what']}: {c['value']:.3g} ({c['threshold']}){'' if c['met'] else ' ✗'}"
        for c in target["checks"])
    rows.append([target["description"], status, numbers or "-"])
  return ["## Targets", ""] + _table(["target", "status", "numbers (✗: misses)"], rows)


def _inference_section(results: dict) -> list[str]:
  rows = []
  for model, inference in results.get("inference", {}).items():
    if "error" in inference:
      rows.append([model, "FAILED", "-", "-", "-", "-", "-"])
      continue
    versions = inference.get("versions", {})
    for row in inference["results"]:
      name = row["workload"]
      if name in versions:
        name += f" (v{versions[name]})"
      rows.append([model, name, str(row["batch_size"]), _stat(row["throughput"]),
                   _stat(row["latency_ms"]), _stat(row.get("ratio_to_slim"), 3),
                   _stat(row.get("ratio_to_keras"), 3)])
  if not rows:
    return []
  repeats = results["config"]["repeats"]
  lines = ["## Inference", "",
           f"Median [min–max] over {repeats} interleaved round(s) after warm-up; ratios are "
           f"per round (same-time runs), then median [min–max].", ""]
  lines += _table(["model", "workload", "batch", "images/s", "latency ms", "/ Slim graph",
                   "/ keras.applications"], rows)
  lines += ["", "Workloads: " + "; ".join(f"`{k}`: {v}"
                                         for k, v in workloads_lib.DESCRIPTIONS.items()) + "."]
  return lines


def _release_filter_flags(results: dict) -> list[str]:
  """The --module_types/--versions the run's export parts were narrowed to (none: all)."""
  return workloads_lib.release_filter_flags(results.get("config", {}))


def _export_section(results: dict) -> list[str]:
  """Per model run: its phases and costs; then per release: write, verify, bytes."""
  exports = results.get("exports", {})
  if not exports:
    return []
  phase_names = list(dict.fromkeys(
      k for summary in exports.values() for k in summary.get("seconds", {})
      if k not in ("write", "verify", "wall", "other", "verification")))
  phase_header = (["model", "releases"] + [f"{name} s" for name in phase_names]
                  + ["write s", "verify s", "other s", "wall s", "verification share"])
  cost_header = ["model", "network constructions (writers + reference)", "peak RSS",
                 "above baseline", "peak RSS / ckpt", "above baseline / ckpt", "bytes written",
                 "bytes / ckpt"]
  phase_rows, cost_rows, release_rows = [], [], []
  for model, summary in exports.items():
    if "error" in summary:
      phase_rows.append([model, "FAILED"] + ["-"] * (len(phase_header) - 2))
      cost_rows.append([model] + ["-"] * (len(cost_header) - 1))
      continue
    s = summary["seconds"]
    c = summary["constructions"]
    phase_rows.append(
        [model, f"{summary['releases_exported']}/{summary['releases_planned']}"]
        + [_stat(s.get(name)) for name in phase_names]
        + [_stat(s["write"]), _stat(s["verify"]), _stat(s["other"]), _stat(s["wall"]),
           _stat(summary["verification_share"], 2)])
    cost_rows.append([
        model, f"{c['networks']} ({c['networks_by_format_writers']} + "
               f"{c['networks_by_reference']})",
        _mib(summary["peak_rss_bytes"]["median"]),
        _mib(summary["peak_rss_above_baseline_bytes"]["median"]),
        f"{summary['peak_rss_over_checkpoint']['median']:.1f}x",
        f"{summary['peak_rss_above_baseline_over_checkpoint']['median']:.1f}x",
        _mib(summary["bytes_written"]), f"{summary['bytes_written_over_checkpoint']:.2f}x"])
    for release in summary["releases"]:
      if "error" in release:
        release_rows.append([release["handle"], release["format"], "FAILED", "-", "-", "-"])
        continue
      release_rows.append([release["handle"], release["format"], _stat(release["write"]),
                           _stat(release["verify"]), _mib(release["bytes_written"]),
                           f"{release['bytes_written_over_checkpoint']:.2f}x"])
  repeats = results["config"]["export_repeats"]
  selected = " ".join(_release_filter_flags(results))
  lines = ["## Export cost", "",
           f"One model run per model (`exporters.pipeline.export_model` over every published "
           f"release{f' that {selected} select' if selected else ''}), each in a fresh "
           f"process; seconds are median [min–max] of {repeats} run(s), imports excluded. The phases are the pipeline's own: reference "
           f"(constructing the verification reference's inference graph, which also lists "
           f"the variables), read_checkpoint, construct_<format> (a format family's "
           f"constructions, once per mode for all its releases), then per release write and "
           f"verify; other is the rest of the wall time. Verification share: the verify "
           f"calls plus the reference's constructions outside them, over the wall time. "
           f"Network constructions are calls of `slim_nets.build` (classifiers added alone "
           f"are not counted). Peak RSS is the process's; the baseline is its RSS right "
           f"after importing TensorFlow; ratios are to the checkpoint's data file (bytes: "
           f"all releases written).", ""]
  lines += _table(phase_header, phase_rows)
  lines += ["", "Costs of one model run (medians):", ""]
  lines += _table(cost_header, cost_rows)
  lines += ["", "Per release (write and verify seconds, median [min–max]):", ""]
  lines += _table(["release", "format", "write s", "verify s", "bytes", "bytes / ckpt"],
                  release_rows)
  sites = []
  for model, summary in exports.items():
    by_site = summary.get("constructions", {}).get("by_site", {})
    sites += [[model, site, str(v["count"]), f"{v['seconds']:.1f}"]
              for site, v in by_site.items()]
  if sites:
    lines += ["", "Network constructions by call site (one run):", ""]
    lines += _table(["model", "construction", "calls", "seconds"], sites)
  return lines


def _construction_section(results: dict) -> list[str]:
  rows = []
  rounds = None
  for model, construction in results.get("construction", {}).items():
    if "error" in construction:
      rows.append([model, "FAILED", "-", "-", "-"])
      continue
    rounds = construction["rounds"]
    for mode, m in construction["modes"].items():
      rows.append([model, mode, _stat(m["with_fix"], 2), _stat(m["without_fix"], 2),
                   _stat(m["ratio_with_to_without"], 3)])
  if not rows:
    return []
  lines = ["## Network construction", "",
           f"Seconds to construct the Slim network in a fresh graph (`slim_nets.build`, "
           f"graph mode), with tf_slim_compat's fix 3 (today's code) and without it "
           f"(`tf_slim_compat.without_fix_3()`), alternated in one process after one untimed "
           f"construction; median [min–max] over {rounds or '?'} round(s); the ratio is "
           f"per round.", ""]
  lines += _table(["model", "mode", "with fix 3 s", "without fix 3 s", "with / without"],
                  rows)
  return lines


def _export_all_section(results: dict) -> list[str]:
  export_all = results.get("export_all")
  if not export_all:
    return []
  rows = []
  for run in export_all["runs"]:
    wall = f"{run['wall_seconds']:.0f}"
    if run["timed_out"]:
      projected = run.get("projected_wall_seconds")
      wall = f"stopped at {wall}" + (f" (projected {projected:.0f})" if projected else "")
    elif run.get("error"):
      wall += " (FAILED)"
    rows.append([str(run["jobs"]), wall,
                 f"{run['exports_finished']}/{run['exports_planned'] or '?'}",
                 f"{run['speedup_vs_jobs1']:.2f}x" if run.get("speedup_vs_jobs1") else "-",
                 f"{run['ratio_to_floor']:.2f}x" if run.get("ratio_to_floor") else "-",
                 _mib(run["peak_tree_rss_bytes"])])
  floor = export_all.get("floor_seconds")
  parts = []
  for model, f in export_all["floor"].items():
    if "error" in f:
      parts.append(f"{model}: FAILED")
    else:
      parts.append(f"{model}: " + ", ".join(f"{k} {v:.1f}" for k, v in f["seconds"].items())
                   + f" ({f['releases']} releases, {f.get('constructions', '?')} "
                     f"constructions)")
  command = " ".join([f"--models={','.join(export_all['models'])}",
                      *_release_filter_flags(results)])
  intro = (f"`python -m exporters.export_all {command}` into an empty directory, once per "
           f"`--jobs` value. ")
  if floor:
    intro += (f"Floor {floor:.0f} s: one process start, then per model reading the "
              f"checkpoint, one inference-mode and one training-mode construction per format "
              f"family and writing each release's bytes (seconds: {'; '.join(parts)}).")
  else:
    intro += "The floor could not be measured: " + "; ".join(parts) + "."
  lines = ["## export-all", "", intro, ""]
  lines += _table(["jobs", "wall s", "exports", "speedup vs jobs=1", "/ floor",
                   "peak RSS (process tree)"], rows)
  return lines


def markdown(results: dict) -> str:
  lines = ["# Benchmark", "", _machine_line(results), ""]
  for section in (_targets_section, _inference_section, _export_section, _construction_section,
                  _export_all_section):
    part = section(results)
    if part:
      lines += part + [""]
  lines.append(f"Raw numbers: `{JSON_NAME}`; chart: `{CHART_NAME}`.")
  return "\n".join(lines) + "\n"


# ---- Chart.

def _ratio_bars(results: dict, key: str) -> tuple[list[str], dict[str, list]]:
  """Group labels ("model b1") and, per workload, (median, min, max) or None per group."""
  groups, series = [], {}
  for model, inference in results.get("inference", {}).items():
    for row in inference.get("results", []):
      if key not in row or row["workload"] not in workloads_lib.EXPORTED:
        continue
      label = f"{model}\nbatch {row['batch_size']}"
      if label not in groups:
        groups.append(label)
      series.setdefault(row["workload"], {})[label] = row[key]
  return groups, {w: [by_group.get(g) for g in groups] for w, by_group in series.items()}


def _model_run_phases(results: dict) -> dict[str, dict[str, float]]:
  """model -> phase -> median seconds of its model run, in the run's order."""
  phases = {}
  for model, summary in results.get("exports", {}).items():
    seconds = summary.get("seconds")
    if seconds:
      phases[model] = {k: v["median"] for k, v in seconds.items()
                       if k not in ("wall", "verification")}
  return phases


def _ratio_panel(ax, results: dict, key: str, title: str, line: float) -> None:
  groups, series = _ratio_bars(results, key)
  width = 0.8 / max(1, len(series))
  for i, (workload, values) in enumerate(series.items()):
    xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
    present = [(x, v) for x, v in zip(xs, values) if v]
    ax.bar([x for x, _ in present], [v["median"] for _, v in present], width, label=workload,
           yerr=[[v["median"] - v["min"] for _, v in present],
                 [v["max"] - v["median"] for _, v in present]], capsize=3)
  ax.axhline(line, color="black", linestyle="--", linewidth=1, label=f"target {line:g}")
  ax.set_xticks(range(len(groups)), groups)
  ax.set_title(title)
  ax.set_ylabel("ratio (median over rounds, bars: min–max)")
  ax.legend(fontsize=8, loc="lower right")


def _phase_panel(ax, phases: dict[str, dict[str, float]]) -> None:
  """One stacked bar per model run: where its wall time went."""
  models = list(phases)
  names = list(dict.fromkeys(k for by_phase in phases.values() for k in by_phase))
  bottoms = [0.0] * len(models)
  for name in names:
    values = [max(0.0, phases[m].get(name, 0.0)) for m in models]
    ax.bar(range(len(models)), values, 0.6, bottom=bottoms, label=name)
    bottoms = [b + v for b, v in zip(bottoms, values)]
  ax.set_xticks(range(len(models)), models)
  ax.set_xlim(-1, len(models))
  ax.set_title("model run wall time by phase")
  ax.set_ylabel("seconds (median)")
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def write_chart(results: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panels = [(_ratio_panel, (results, key, title, line)) for key, title, line in (
      ("ratio_to_slim", "exported / Slim graph throughput",
       targets_lib.EXPORTED_VS_SLIM_MIN),
      ("ratio_to_keras", "exported / keras.applications throughput", targets_lib.VS_KERAS_MIN))
      if _ratio_bars(results, key)[0]]
  phases = _model_run_phases(results)
  if phases:
    panels.append((_phase_panel, (phases,)))
  fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.5),
                           squeeze=False)
  if not panels:
    axes[0][0].text(0.5, 0.5, "no throughput ratios or model runs measured", ha="center",
                    va="center")
    axes[0][0].set_axis_off()
  for ax, (draw, args) in zip(axes[0], panels):
    draw(ax, *args)
  fig.suptitle(f"{results['machine']['cpu']}, {results['machine']['date'][:10]}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
