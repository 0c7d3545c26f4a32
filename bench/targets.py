"""The issue's performance targets, evaluated on one run's results.

Each target comes back as {"id", "description", "status", "checks"} where
status is "met", "missed" or "not measured" (the run left out what it needs)
and each check names what was compared, its value and the threshold. The
benchmark never fails on a missed target: it reports it.
"""
from __future__ import annotations

from bench import workloads as workloads_lib

MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"

EXPORTED_VS_SLIM_MODELS = ("nasnet_mobile", "pnasnet_large")
EXPORTED_VS_SLIM_MIN = 0.95
VS_KERAS_MODEL = "nasnet_mobile"
VS_KERAS_BATCH_SIZES = (1, 32)
VS_KERAS_WORKLOADS = (workloads_lib.SAVED_MODEL, workloads_lib.KERAS_LAYER)
VS_KERAS_MIN = 1.0
VERIFY_SHARE_MAX = 0.30
RSS_MODEL = "pnasnet_large"
RSS_OVER_CHECKPOINT_MAX = 3.0
EXPORT_ALL_OVER_FLOOR_MAX = 2.0
CONSTRUCTION_MODEL = "nasnet_mobile"
CONSTRUCTION_RATIO_MAX = 1 / 3


def _target(target_id: str, description: str, checks: list[dict]) -> dict:
  if not checks:
    status = NOT_MEASURED
  else:
    status = MET if all(c["met"] for c in checks) else MISSED
  return {"id": target_id, "description": description, "status": status, "checks": checks}


def _check(what: str, value, threshold: str, met: bool) -> dict:
  return {"what": what, "value": value, "threshold": threshold, "met": bool(met)}


def _inference_rows(results: dict, model: str) -> list[dict]:
  inference = results.get("inference", {}).get(model) or {}
  return inference.get("results", [])


def exported_vs_slim(results: dict) -> dict:
  checks = []
  for model in EXPORTED_VS_SLIM_MODELS:
    for row in _inference_rows(results, model):
      if row["workload"] in workloads_lib.EXPORTED and "ratio_to_slim" in row:
        ratio = row["ratio_to_slim"]["median"]
        checks.append(_check(f"{model} {row['workload']} batch {row['batch_size']}", ratio,
                             f">= {EXPORTED_VS_SLIM_MIN}", ratio >= EXPORTED_VS_SLIM_MIN))
  return _target("exported_vs_slim",
                 "Exported v4/v5 and v3 throughput / Slim graph throughput >= 0.95 at every "
                 "batch size (nasnet_mobile, pnasnet_large)", checks)


def exported_vs_keras(results: dict) -> dict:
  checks = []
  for row in _inference_rows(results, VS_KERAS_MODEL):
    if (row["workload"] in VS_KERAS_WORKLOADS and row["batch_size"] in VS_KERAS_BATCH_SIZES
        and "ratio_to_keras" in row):
      ratio = row["ratio_to_keras"]["median"]
      checks.append(_check(f"{VS_KERAS_MODEL} {row['workload']} batch {row['batch_size']}",
                           ratio, f">= {VS_KERAS_MIN}", ratio >= VS_KERAS_MIN))
  return _target("exported_vs_keras",
                 "Exported nasnet_mobile throughput / tf_keras.applications.NASNetMobile >= 1.0 "
                 "at batch 1 and 32", checks)


def construction_time(results: dict) -> dict:
  """Fix 3's effect, measured side by side: constructions with it / without it, per mode."""
  checks = []
  construction = results.get("construction", {}).get(CONSTRUCTION_MODEL) or {}
  for mode, m in construction.get("modes", {}).items():
    ratio = m["ratio_with_to_without"]["median"]
    checks.append(_check(
        f"{CONSTRUCTION_MODEL} {mode} mode: {m['with_fix']['median']:.2f} s / "
        f"{m['without_fix']['median']:.2f} s", ratio, f"<= {CONSTRUCTION_RATIO_MAX:.3g}",
        ratio <= CONSTRUCTION_RATIO_MAX))
  return _target("construction_time",
                 "Constructing a nasnet_mobile network: at most a third of today's time "
                 "(with / without tf_slim_compat's fix 3, measured side by side in one run)",
                 checks)


def verify_overhead(results: dict) -> dict:
  checks = []
  for model, summary in results.get("exports", {}).items():
    if "verification_share" in summary:
      share = summary["verification_share"]["median"]
      checks.append(_check(f"{model} model run: verification / wall time", share,
                           f"<= {VERIFY_SHARE_MAX}", share <= VERIFY_SHARE_MAX))
  return _target("verify_overhead",
                 "Verification <= 30% of the export's wall time (per model run: its releases' "
                 "verify calls and the reference's constructions outside them)", checks)


def export_peak_rss(results: dict) -> dict:
  checks = []
  summary = results.get("exports", {}).get(RSS_MODEL) or {}
  if "peak_rss_above_baseline_over_checkpoint" in summary:
    ratio = summary["peak_rss_above_baseline_over_checkpoint"]["max"]
    checks.append(_check(f"{RSS_MODEL} model run: peak RSS above the baseline / checkpoint "
                         f"data", ratio, f"<= {RSS_OVER_CHECKPOINT_MAX}",
                         ratio <= RSS_OVER_CHECKPOINT_MAX))
  return _target("export_peak_rss",
                 "Peak memory of a pnasnet_large model run <= 3x its checkpoint's data file, "
                 "above the process's footprint after importing TensorFlow", checks)


def export_all_floor(results: dict) -> dict:
  checks = []
  export_all = results.get("export_all") or {}
  for run in export_all.get("runs", []):
    if run["jobs"] != 1:
      continue
    ratio = run.get("ratio_to_floor")
    what = "export-all --jobs=1 / floor" + (" (projected; run stopped at the timeout)"
                                             if run.get("timed_out") else "")
    floor = export_all.get("floor_seconds")
    if ratio is None and run.get("timed_out") and floor:
      # Stopped before a release finished: its wall time alone bounds the ratio from below,
      # which decides the target only when it already misses it.
      lower_bound = run["wall_seconds"] / floor
      if lower_bound > EXPORT_ALL_OVER_FLOOR_MAX:
        ratio = lower_bound
        what = "export-all --jobs=1 / floor (at least; stopped before a release finished)"
    if ratio is not None:
      checks.append(_check(what, ratio, f"<= {EXPORT_ALL_OVER_FLOOR_MAX}",
                           ratio <= EXPORT_ALL_OVER_FLOOR_MAX))
  return _target("export_all_floor",
                 "export-all over every release of a model <= 2x its floor (process start; "
                 "per model: one inference- and one training-mode construction per format "
                 "family, reading the checkpoint, writing the bytes)", checks)


TARGETS = (exported_vs_slim, exported_vs_keras, export_all_floor, construction_time,
           verify_overhead, export_peak_rss)


def evaluate(results: dict) -> list[dict]:
  return [target(results) for target in TARGETS]
