"""What verifying an artifact means: one set of rules for every format and deployment.

Every writer (TF1 Hub format, TF2 SavedModel) and every deployment (TF.js)
checks what it wrote with its own client against the verification reference,
and this module is where the rules of that comparison are stated, once:

- `TOLERANCE`: the largest absolute difference an output may have from the
  reference (float32 on a CPU; the same bound the upstream goldens use);
- `OUTPUT_OF_MODULE_TYPE`: which reference output a module type returns;
- `training_output_is_deterministic`: training-mode outputs are compared only
  where they do not depend on random numbers: the feature vector (the
  classifier's dropout makes training-mode logits random) of a network
  without path dropout (NASNet-A large and PNASNet-5 large drop paths in
  training);
- `non_finite_values` / `compare`: non-finite values are named before any
  comparison (NaN equals nothing, Inf is close to Inf), then shapes, then the
  largest difference, each failure one line naming what differs.

`exporters.pipeline.verify_release` verifies a release on disk against a
checkpoint (`python -m exporters.verify`).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from exporters.errors import ExportError

TOLERANCE = 1e-4
OUTPUT_OF_MODULE_TYPE = {"classification": "logits", "feature_vector": "features"}
FEATURES = OUTPUT_OF_MODULE_TYPE["feature_vector"]
# Batch norm's moving statistics: after a training-mode step each must have
# moved to momentum * old + (1 - momentum) * batch statistic, within this
# relative error (float32 arithmetic on values of any magnitude).
MOMENTUM_RELATIVE_TOLERANCE = 1e-5
# Regularization losses are recomputed by the client from the same weights.
LOSS_RELATIVE_TOLERANCE = 1e-5


class VerificationError(ExportError):
  """An artifact does not reproduce the reference; the message names what differs."""


def non_finite_values(what: str, values: Mapping[str, object] | Iterable[tuple[str, object]]) -> str:
  """"" when every value is finite, else a line naming which are not (NaN / Inf)."""
  from checkpoints.integrity import non_finite

  items = values.items() if isinstance(values, Mapping) else values
  bad = [(name, kind) for name, value in items if (kind := non_finite(value))]
  if not bad:
    return ""
  listed = ", ".join(f"{kind} in {name}" for name, kind in bad[:5])
  more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
  return f"non-finite values in {what}: {listed}{more}"


def compare(what: str, actual, expected, tolerance: float = TOLERANCE) -> float:
  """The largest absolute difference of `actual` from `expected`; raises VerificationError
  naming `what` when it is not finite, has another shape, or differs by more than `tolerance`."""
  actual, expected = np.asarray(actual), np.asarray(expected)
  if problem := non_finite_values(what, [("the artifact's output", actual)]):
    raise VerificationError(problem)
  if actual.shape != expected.shape:
    raise VerificationError(f"{what}: the artifact gives shape {list(actual.shape)}, the "
                            f"reference {list(expected.shape)}")
  diff = float(np.max(np.abs(actual.astype(np.float64) - expected))) if actual.size else 0.0
  if not diff <= tolerance:
    raise VerificationError(f"{what}: differs from the reference by {diff:.3g} "
                            f"(tolerance {tolerance})")
  return diff


def log_softmax(logits) -> np.ndarray:
  """log(softmax(logits)) over the last axis, computed in float64."""
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def compare_log_probabilities(what: str, probabilities, logits,
                              tolerance: float = TOLERANCE) -> float:
  """`probabilities` (a deployment's softmax output) against the reference's `logits`, in
  log space: the probabilities of a randomly initialized network are all near 1/1001, so
  an absolute tolerance on them would accept almost anything. Zero or negative
  probabilities are non-finite logs and fail. Returns the largest difference."""
  probabilities = np.asarray(probabilities, np.float64)
  if probabilities.shape != np.shape(logits):
    raise VerificationError(f"{what}: the artifact gives shape {list(probabilities.shape)}, "
                            f"the reference {list(np.shape(logits))}")
  with np.errstate(divide="ignore", invalid="ignore"):
    logs = np.log(probabilities)
  return compare(what, logs, log_softmax(logits), tolerance)


def check_shape(what: str, actual, shape: tuple[int, ...]) -> None:
  """For an output that cannot be compared (random): finite values of the right shape."""
  actual = np.asarray(actual)
  if problem := non_finite_values(what, [("the artifact's output", actual)]):
    raise VerificationError(problem)
  if actual.shape != tuple(shape):
    raise VerificationError(f"{what}: the artifact gives shape {list(actual.shape)}, "
                            f"expected {list(shape)}")


def training_output_is_deterministic(model, output: str) -> bool:
  """Whether `output` ("logits" / "features") in training mode can be compared with the
  reference's training mode: only the features of a network without path dropout."""
  import slim_nets
  return output == FEATURES and slim_nets.get_net(model.name).config().drop_path_keep_prob >= 1.0


def check_moving_means(what: str, momentum: float, old: Iterable[np.ndarray],
                       new: Iterable[np.ndarray], batch_means: Iterable[np.ndarray]) -> float:
  """Each moving mean moved by `momentum` toward its batch mean; returns the worst relative
  error, raises VerificationError naming the momentum when one did not."""
  errors = [float(np.max(np.abs(n - (momentum * o + (1.0 - momentum) * m)) / (1.0 + np.abs(m))))
            for o, n, m in zip(old, new, batch_means)]
  worst = max(errors) if errors else 0.0
  if not worst <= MOMENTUM_RELATIVE_TOLERANCE:
    raise VerificationError(f"{what}: a training step does not move the moving means by the "
                            f"version's batch-norm momentum {momentum} (worst relative error "
                            f"{worst:.3g})")
  return worst


def compare_losses(what: str, actual: Iterable[float], expected: Iterable[float]) -> int:
  """The regularization losses, as sorted values, equal the reference's; returns their count."""
  actual, expected = np.sort(np.asarray(list(actual))), np.sort(np.asarray(list(expected)))
  if problem := non_finite_values(what, [("regularization losses", actual)]):
    raise VerificationError(problem)
  if actual.shape != expected.shape:
    raise VerificationError(f"{what}: {len(actual)} regularization losses, the reference has "
                            f"{len(expected)} for the artifact's weights")
  if not np.allclose(actual, expected, rtol=LOSS_RELATIVE_TOLERANCE, atol=1e-9):
    raise VerificationError(f"{what}: regularization losses differ from the reference's "
                            f"weight decay")
  return int(actual.size)


def different_variables(got: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]
                        ) -> str:
  """"" when `got` holds exactly `expected`'s variables bitwise, else a line naming which
  are missing, extra, non-finite or different."""
  if problem := non_finite_values("the variables", got):
    return problem
  missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
  if missing or extra:
    parts = []
    if missing:
      parts.append(f"missing {len(missing)}: {', '.join(missing[:5])}")
    if extra:
      parts.append(f"extra {len(extra)}: {', '.join(extra[:5])}")
    return "variables other than the checkpoint's (" + "; ".join(parts) + ")"
  changed = sorted(n for n in got if np.asarray(got[n]).dtype != expected[n].dtype
                   or np.asarray(got[n]).tobytes() != expected[n].tobytes())
  if changed:
    return (f"{len(changed)} variable(s) differ from the checkpoint: "
            f"{', '.join(changed[:5])}")
  return ""
