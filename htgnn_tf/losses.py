"""Multi-loss optimization of the HT-GNN paper (Sec. IV-F, Eq. 19-21).

Implements Eq. (19) (cross-entropy of the classification towers), Eq. (20) (the dynamic
Huber loss of the regression towers, delta = 95th percentile of the batch's absolute
errors) and Eq. (21) (``beta1 * JS + beta2 * CE + beta3 * Huber``), with the plain MSE
and fixed-delta Huber losses of the paper's loss ablation (Table III).

Conventions shared by every loss here:

* ``labels``, ``preds``/``probs`` and ``mask`` have the same shape, ``[users]`` or
  ``[users, tasks]``. ``mask`` is 1 where the label is known and 0 where it is censored
  (``label_mask_{h}`` of :mod:`htgnn_tf.data.graph_schema`).
* A loss is the mean over the *known* labels of each task, so it returns a scalar for
  ``[users]`` inputs and a ``[tasks]`` vector for ``[users, tasks]`` inputs. A task with no
  known label contributes exactly 0 (never NaN), and censored labels never reach the
  arithmetic (they are replaced by 0 before use, so a NaN placeholder is harmless).
* :func:`predicted_value` turns a regression tower's output into the number a user reads
  (STYLE.md rule 5). The classification towers already output the probability that is
  read, so Eq. (19) has no separate prediction function.

Departures from the paper (also listed on each function):

* Eq. (19) as printed, ``sum c_i log(c^_i)``, has no minus sign and no ``(1 - c_i)`` term;
  we use the standard binary cross-entropy ``-[c log p + (1 - c) log(1 - p)]`` with ``p``
  clipped to ``[eps, 1 - eps]``.
* Eq. (21) divides the sums over users by the batch size n; we divide each task by its
  number of known labels (a masked mean), so heavily censored long horizons are not
  down-weighted by their censoring rate.
* Eq. (20) leaves delta = 0 possible (a perfect batch); delta is floored at ``epsilon``
  and is a stop-gradient constant, computed per task over the known labels only.
* Loss ablation modes (``LossMode``): ``"multi"`` is Eq. (21); ``"huber"`` and ``"mse"``
  replace the JS + dynamic-Huber terms by a fixed-delta Huber or an MSE term. The BCE
  term is kept in all modes so that the classification towers still train and the AUC
  stays reportable; Table III only compares the regression losses.
"""
from __future__ import annotations

import math
import typing
from typing import Literal, Optional

import tensorflow as tf

LossMode = Literal["multi", "huber", "mse"]
LOSS_MODES: tuple[str, ...] = typing.get_args(LossMode)

_PROB_EPSILON = 1e-7


def predicted_value(regression_output: tf.Tensor) -> tf.Tensor:
    """The LT (days) / LTV (value units) a user reads from a regression tower.

    The regression towers of Eq. (18) end in a linear layer and may output negative
    numbers; LT and LTV cannot be negative, so the readout is ``max(output, 0)``.
    """
    return tf.nn.relu(tf.cast(regression_output, tf.float32))


def _known(mask: tf.Tensor) -> tf.Tensor:
    return tf.cast(mask, tf.float32) > 0.0


def _masked_mean(values: tf.Tensor, known: tf.Tensor) -> tf.Tensor:
    """Mean of ``values`` over the known rows of axis 0; 0 where a column has none."""
    values = tf.where(known, values, tf.zeros_like(values))  # [users, ...]
    count = tf.reduce_sum(tf.cast(known, tf.float32), axis=0)  # [...]
    return tf.math.divide_no_nan(tf.reduce_sum(values, axis=0), count)  # [...]


def _known_errors(labels, preds, mask) -> tuple[tf.Tensor, tf.Tensor]:
    """``preds - labels`` with censored labels replaced by 0, and the known mask."""
    preds = tf.cast(preds, tf.float32)
    known = _known(mask)
    labels = tf.where(known, tf.cast(labels, tf.float32), tf.zeros_like(preds))
    return preds - labels, known  # [users, ...]


def _check_quantile(quantile: float) -> None:
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile!r}")


def masked_quantile(values: tf.Tensor, mask: tf.Tensor, quantile: float) -> tf.Tensor:
    """Quantile over the known rows of axis 0, like ``numpy.percentile`` (linear).

    Sorts each column and interpolates linearly between order statistics at the virtual
    index ``quantile * (count - 1)`` (numpy's default ``method="linear"``). A column with
    no known value gives 0.

    Args:
      values: [users] or [users, tasks] float tensor.
      mask: same shape; rows with mask > 0 take part.
      quantile: in [0, 1] (0.95 = the 95th percentile).

    Returns:
      A scalar for [users] input, a [tasks] vector for [users, tasks] input.
    """
    _check_quantile(quantile)
    values = tf.cast(values, tf.float32)
    known = _known(mask)
    rest_shape = tf.shape(values)[1:]
    flat_shape = tf.stack([tf.shape(values)[0], tf.reduce_prod(rest_shape)])
    columns = tf.transpose(tf.reshape(values, flat_shape))  # [tasks, users]
    known_columns = tf.transpose(tf.reshape(known, flat_shape))  # [tasks, users]
    # One extra unknown slot per column keeps the gathers valid for an empty batch.
    columns = tf.pad(columns, [[0, 0], [0, 1]])  # [tasks, users+1]
    known_columns = tf.pad(known_columns, [[0, 0], [0, 1]])  # [tasks, users+1]
    columns = tf.where(known_columns, columns, tf.zeros_like(columns))
    # Unknown entries become the column maximum, so they sort after every known value.
    fill = tf.reduce_max(columns, axis=1, keepdims=True)  # [tasks, 1]
    ordered = tf.sort(tf.where(known_columns, columns, fill + tf.zeros_like(columns)),
                      axis=1)  # [tasks, users+1]
    count = tf.reduce_sum(tf.cast(known_columns, tf.float32), axis=1)  # [tasks]
    last = tf.maximum(count - 1.0, 0.0)  # [tasks]
    position = quantile * last  # [tasks]
    lower = tf.floor(position)  # [tasks]
    upper = tf.minimum(lower + 1.0, last)  # [tasks]
    lower_value = tf.gather(ordered, tf.cast(lower, tf.int32), batch_dims=1)  # [tasks]
    upper_value = tf.gather(ordered, tf.cast(upper, tf.int32), batch_dims=1)  # [tasks]
    result = lower_value + (position - lower) * (upper_value - lower_value)  # [tasks]
    result = tf.where(count > 0.0, result, tf.zeros_like(result))  # [tasks]
    return tf.reshape(result, rest_shape)


def huber(errors: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """Elementwise Huber of Eq. (20): ``e^2/2`` if ``|e| <= delta`` else ``delta|e| - delta^2/2``."""
    abs_errors = tf.abs(errors)  # [users, ...]
    quadratic = tf.minimum(abs_errors, delta)  # [users, ...]
    return 0.5 * tf.square(quadratic) + delta * (abs_errors - quadratic)  # [users, ...]


def masked_bce(labels: tf.Tensor, probs: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy of the classification towers, Eq. (19), over known labels.

    Departure: the printed Eq. (19) lacks the minus sign and the ``(1 - c)`` term; this
    is the standard ``-[c log p + (1 - c) log(1 - p)]``, ``p`` clipped to ``[1e-7, 1-1e-7]``.

    Args:
      labels: 0/1 targets, [users] or [users, tasks].
      probs: sigmoid outputs of the classification towers, same shape.
      mask: 1 = label known, 0 = censored, same shape.

    Returns:
      Mean BCE per task (scalar for [users] input).
    """
    probs = tf.clip_by_value(tf.cast(probs, tf.float32), _PROB_EPSILON, 1.0 - _PROB_EPSILON)
    known = _known(mask)
    labels = tf.where(known, tf.cast(labels, tf.float32), tf.zeros_like(probs))
    per_user = -(labels * tf.math.log(probs)
                 + (1.0 - labels) * tf.math.log(1.0 - probs))  # [users, ...]
    return _masked_mean(per_user, known)


def masked_mse(labels: tf.Tensor, preds: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean squared error over known labels (the "MSE Loss" ablation of Table III)."""
    errors, known = _known_errors(labels, preds, mask)
    return _masked_mean(tf.square(errors), known)


def masked_huber(labels: tf.Tensor, preds: tf.Tensor, mask: tf.Tensor,
                 delta: float = 1.0) -> tf.Tensor:
    """Huber loss with a fixed ``delta`` over known labels ("Huber Loss" of Table III)."""
    if not delta > 0.0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    errors, known = _known_errors(labels, preds, mask)
    return _masked_mean(huber(errors, tf.constant(delta, tf.float32)), known)


def dynamic_huber_delta(labels: tf.Tensor, preds: tf.Tensor, mask: tf.Tensor,
                        quantile: float = 0.95, epsilon: float = 1e-6) -> tf.Tensor:
    """Delta of Eq. (20): per task, the ``quantile`` of ``|y - y^|`` over known labels.

    Stop-gradient, floored at ``epsilon`` (a perfect or fully censored batch would
    otherwise give delta = 0).
    """
    if not epsilon > 0.0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    errors, known = _known_errors(labels, preds, mask)
    delta = masked_quantile(tf.abs(errors), known, quantile)  # [...]
    return tf.stop_gradient(tf.maximum(delta, epsilon))


def dynamic_huber(labels: tf.Tensor, preds: tf.Tensor, mask: tf.Tensor,
                  quantile: float = 0.95, epsilon: float = 1e-6) -> tf.Tensor:
    """Dynamic Huber loss of the regression towers, Eq. (20), over known labels.

    delta = :func:`dynamic_huber_delta` (per task, from this batch, stop-gradient).

    Args:
      labels: LT/LTV targets, [users] or [users, tasks].
      preds: regression tower outputs, same shape.
      mask: 1 = label known, 0 = censored, same shape.
      quantile: which quantile of the absolute errors is delta (paper: 0.95).
      epsilon: floor of delta.

    Returns:
      Mean Huber loss per task (scalar for [users] input).
    """
    delta = dynamic_huber_delta(labels, preds, mask, quantile, epsilon)  # [...]
    errors, known = _known_errors(labels, preds, mask)
    return _masked_mean(huber(errors, delta), known)


@tf.keras.utils.register_keras_serializable(package="htgnn")
class MultiLoss:
    """The multi-loss of Eq. (21) and its ablations (Table III).

    ``mode="multi"``: ``beta1 * JS + beta2 * BCE + beta3 * dynamic Huber``.
    ``mode="huber"``: ``beta2 * BCE + beta3 * Huber(huber_delta)``.
    ``mode="mse"``:   ``beta2 * BCE + beta3 * MSE``.

    Each term is summed over tasks (Eq. 21 sums over the towers) after a masked mean over
    users. The JS term (Eq. 6-10) is computed elsewhere and passed in as a tensor (scalar
    or per task; it is summed). The paper gives no beta values; all default to 1.

    Departures: see the module docstring (masked means instead of 1/n; BCE kept in the
    ablation modes; delta floored at ``epsilon``).

    Call arguments (keyword-only):
      regression_labels, regression_preds, regression_mask: [users, tasks] (or [users]).
      classification_labels, classification_probs: [users, tasks] or None (no BCE term).
      classification_mask: defaults to ``regression_mask``.
      js_loss: scalar or [tasks] tensor, or None (no hypergraph, e.g. the w/o HG ablation);
        ignored unless ``mode == "multi"``.

    Returns:
      dict of scalars: ``loss`` (the total), ``js``, ``bce``, ``regression`` (unweighted
      terms, for logging).
    """

    def __init__(self, *, mode: LossMode = "multi", beta1: float = 1.0, beta2: float = 1.0,
                 beta3: float = 1.0, quantile: float = 0.95, huber_delta: float = 1.0,
                 epsilon: float = 1e-6):
        if mode not in LOSS_MODES:
            raise ValueError(f"mode must be one of {LOSS_MODES}, got {mode!r}")
        for name, beta in (("beta1", beta1), ("beta2", beta2), ("beta3", beta3)):
            if not (math.isfinite(beta) and beta >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {beta!r}")
        _check_quantile(quantile)
        if not huber_delta > 0.0:
            raise ValueError(f"huber_delta must be > 0, got {huber_delta!r}")
        if not epsilon > 0.0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.mode = mode
        self.beta1 = beta1
        self.beta2 = beta2
        self.beta3 = beta3
        self.quantile = quantile
        self.huber_delta = huber_delta
        self.epsilon = epsilon

    def regression_term(self, labels, preds, mask) -> tf.Tensor:
        """The unweighted regression loss of this mode, summed over tasks."""
        if self.mode == "multi":
            per_task = dynamic_huber(labels, preds, mask, self.quantile, self.epsilon)
        elif self.mode == "huber":
            per_task = masked_huber(labels, preds, mask, self.huber_delta)
        else:
            per_task = masked_mse(labels, preds, mask)
        return tf.reduce_sum(per_task)

    def __call__(self, *, regression_labels, regression_preds, regression_mask,
                 classification_labels=None, classification_probs=None,
                 classification_mask=None, js_loss: Optional[tf.Tensor] = None
                 ) -> dict[str, tf.Tensor]:
        regression = self.regression_term(regression_labels, regression_preds,
                                          regression_mask)
        if classification_probs is None:
            bce = tf.constant(0.0)
        else:
            if classification_labels is None:
                raise ValueError("classification_probs given without classification_labels")
            if classification_mask is None:
                classification_mask = regression_mask
            bce = tf.reduce_sum(masked_bce(classification_labels, classification_probs,
                                           classification_mask))
        if self.mode == "multi" and js_loss is not None:
            js = tf.reduce_sum(tf.cast(js_loss, tf.float32))
        else:
            js = tf.constant(0.0)
        total = self.beta1 * js + self.beta2 * bce + self.beta3 * regression
        return {"loss": total, "js": js, "bce": bce, "regression": regression}

    def get_config(self) -> dict:
        return {"mode": self.mode, "beta1": self.beta1, "beta2": self.beta2,
                "beta3": self.beta3, "quantile": self.quantile,
                "huber_delta": self.huber_delta, "epsilon": self.epsilon}

    @classmethod
    def from_config(cls, config: dict) -> "MultiLoss":
        return cls(**config)


def total_loss(*, mode: LossMode = "multi", beta1: float = 1.0, beta2: float = 1.0,
               beta3: float = 1.0, quantile: float = 0.95, huber_delta: float = 1.0,
               epsilon: float = 1e-6, **terms) -> tf.Tensor:
    """Scalar Eq. (21) loss: ``MultiLoss(mode=..., beta...)(**terms)["loss"]``."""
    return MultiLoss(mode=mode, beta1=beta1, beta2=beta2, beta3=beta3, quantile=quantile,
                     huber_delta=huber_delta, epsilon=epsilon)(**terms)["loss"]
