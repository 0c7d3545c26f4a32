"""Writes one benchmark run as bench.json, a Markdown report (bench.md) and bench.png.

bench.md starts with the machine and date it came from, so it can be pasted
into the README as it is. The chart shows the headline: throughput ratios of
the exports to the Slim graph and to keras.applications, per model and batch
size, with the spread of the per-round ratios as error bars.
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
        f"{c['what']}: {c['value']:.3g}{'' if c['met'] else ' ✗'}" for c in target["checks"])
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


def _export_section(results: dict) -> list[str]:
  rows = []
  for model, by_format in results.get("exports", {}).items():
    for summary in by_format.values():
      if "error" in summary:
        rows.append([summary["handle"], "FAILED"] + ["-"] * 11)
        continue
      s = summary["seconds"]
      builds = f"{summary.get('graph_builds', '?')} + {summary.get('verify_graph_builds', '?')}"
      rows.append([
          summary["handle"], builds, _stat(s["build"]), _stat(s["restore"]),
          _stat(s["trace_serialize"]), _stat(s["write"]),
          f"{_stat(s['verify'])} ({_stat(s['verify_build'])})", _stat(s["total"]),
          _stat(summary["verify_over_export"], 2),
          f"{_mib(summary['peak_rss_bytes']['median'])} (+"
          f"{_mib(summary['peak_rss_bytes']['median'] - summary['baseline_rss_bytes']['median'])})",
          f"{summary['peak_rss_over_checkpoint']['median']:.1f}x",
          f"{summary['bytes_written_over_checkpoint']:.2f}x",
      ])
  if not rows:
    return []
  lines = ["## Export cost", "",
           f"Seconds, median [min–max] of {results['config']['export_repeats']} export(s), each "
           "in a fresh process (imports excluded). graph builds: Slim graph constructions "
           "outside + inside verification (reading the checkpoint strictly builds one to list "
           "the variables); build: their time outside verification; restore: reading the "
           "checkpoint's values (v1-3 also assign them in a session); trace/serialize: the "
           "rest of reading and writing (tf.function tracing, MetaGraph export, SavedModel "
           "proto); write: savers and file writes; verify: the writer's verification, in "
           "brackets its reference-graph construction. Peak RSS is the export process's, "
           "TensorFlow's own footprint included (in brackets: above the process after "
           "importing TensorFlow); ratios are to the checkpoint's data file.", ""]
  lines += _table(["release", "graph builds", "build", "restore", "trace/serialize", "write",
                   "verify (build)", "total", "verify / export", "peak RSS", "RSS / ckpt",
                   "bytes / ckpt"], rows)
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
                   + f" ({f['releases']} releases)")
  intro = (f"`python -m exporters.export_all --models={','.join(export_all['models'])}` "
           f"into an empty directory, once per `--jobs` value. ")
  if floor:
    intro += (f"Floor {floor:.0f} s: one process start, then per model one inference-mode and "
              f"one training-mode graph build, reading the checkpoint and writing each "
              f"release's bytes (seconds: {'; '.join(parts)}).")
  else:
    intro += "The floor could not be measured: " + "; ".join(parts) + "."
  lines = ["## export-all", "", intro, ""]
  lines += _table(["jobs", "wall s", "exports", "speedup vs jobs=1", "/ floor",
                   "peak RSS (process tree)"], rows)
  return lines


def markdown(results: dict) -> str:
  lines = ["# Benchmark", "", _machine_line(results), ""]
  for section in (_targets_section, _inference_section, _export_section, _export_all_section):
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


def write_chart(results: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  panels = [(key, title, line) for key, title, line in (
      ("ratio_to_slim", "exported / Slim graph throughput",
       targets_lib.EXPORTED_VS_SLIM_MIN),
      ("ratio_to_keras", "exported / keras.applications throughput", targets_lib.VS_KERAS_MIN))
      if _ratio_bars(results, key)[0]]
  fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.5),
                           squeeze=False)
  if not panels:
    axes[0][0].text(0.5, 0.5, "no throughput ratios measured", ha="center", va="center")
    axes[0][0].set_axis_off()
  for ax, (key, title, line) in zip(axes[0], panels):
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
  fig.suptitle(f"{results['machine']['cpu']}, {results['machine']['date'][:10]}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
