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
VERIFY_OVERHEAD_MAX = 0.30
RSS_MODEL = "pnasnet_large"
RSS_OVER_CHECKPOINT_MAX = 3.0
EXPORT_ALL_OVER_FLOOR_MAX = 2.0


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


def verify_overhead(results: dict) -> dict:
  checks = []
  for model, by_format in results.get("exports", {}).items():
    for summary in by_format.values():
      if "verify_over_export" in summary:
        ratio = summary["verify_over_export"]["median"]
        checks.append(_check(f"{summary['handle']} verify / export", ratio,
                             f"<= {VERIFY_OVERHEAD_MAX}", ratio <= VERIFY_OVERHEAD_MAX))
  return _target("verify_overhead",
                 "Verification adds <= 30% to an export's wall time", checks)


def export_peak_rss(results: dict) -> dict:
  checks = []
  for summary in results.get("exports", {}).get(RSS_MODEL, {}).values():
    if "peak_rss_over_checkpoint" in summary:
      ratio = summary["peak_rss_over_checkpoint"]["max"]
      checks.append(_check(f"{summary['handle']} peak RSS / checkpoint data", ratio,
                           f"<= {RSS_OVER_CHECKPOINT_MAX}", ratio <= RSS_OVER_CHECKPOINT_MAX))
  return _target("export_peak_rss",
                 "Peak RSS of a pnasnet_large export <= 3x its checkpoint's data file", checks)


def export_all_floor(results: dict) -> dict:
  checks = []
  export_all = results.get("export_all") or {}
  for run in export_all.get("runs", []):
    if run["jobs"] != 1:
      continue
    ratio = run.get("ratio_to_floor")
    if ratio is None and run.get("timed_out"):
      # Stopped before one export finished: its wall time alone bounds the ratio from below.
      floor = export_all.get("floor_seconds")
      if floor:
        ratio = run["wall_seconds"] / floor
    if ratio is not None:
      what = "export-all --jobs=1 / floor" + (" (projected; run stopped at the timeout)"
                                               if run.get("timed_out") else "")
      checks.append(_check(what, ratio, f"<= {EXPORT_ALL_OVER_FLOOR_MAX}",
                           ratio <= EXPORT_ALL_OVER_FLOOR_MAX))
  return _target("export_all_floor",
                 "export-all over every module type and version <= 2x its floor (per model: "
                 "one inference and one training graph build, reading the checkpoint, writing "
                 "the bytes)", checks)


TARGETS = (exported_vs_slim, exported_vs_keras, verify_overhead, export_peak_rss,
           export_all_floor)


def evaluate(results: dict) -> list[dict]:
  return [target(results) for target in TARGETS]
