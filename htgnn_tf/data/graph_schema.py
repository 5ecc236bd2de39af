"""The GraphTensor contract between the dataset job, the model and the server.

One cohort of users is one GraphTensor (paper Sec. IV-B):

* node set ``user`` — one node per user, with the features below;
* node set ``hyperedge`` — one node per user i, the hyperedge ``{i} ∪ kNN_k(i)``;
* edge set ``incidence`` — source ``hyperedge``, target ``user``: one edge per
  (hyperedge, member) pair, i.e. the non-zeros of the incidence matrix H of Eq. (4).

User features (``F`` = categorical features, ``S`` = statistical features, ``T`` = metric
types (sequence types), ``W`` = observation days):

=====================  =========  ========  ==================================================
name                   dtype      shape     meaning
=====================  =========  ========  ==================================================
user_id                string     []        the raw id, kept as a string ("00001")
categorical_ids        int64      [F]       vocabulary ids; 0 = out of vocabulary
stat_values            float32    [S]       acquisition-day totals + numeric profile columns
stat_bins              int64      [S]       Scott's-rule bin ids of ``stat_values`` (Eq. 2)
seq_values             float32    [T, W]    daily metric totals, days 0..W-1 (0 past obs_days)
seq_tokens             int64      [T, W]    0 = not observed, 1 = zero, 2.. = Scott bin + 2
obs_days               int64      []        observed days s (1..W)
=====================  =========  ========  ==================================================

Label features (only in the training schema, ``with_labels=True``), per horizon ``h``:

=====================  =========  ========  ==================================================
lt_{h}                 float32    []        LT_h, active days in [0, h)
ltv_{h}                float32    []        LTV_h, value in [0, h) (units of the value metric)
label_mask_{h}         float32    []        1 if day h-1 is on or before the snapshot date
last_active_day_{h}    int64      []        last active day in [0, h), -1 if none; the
                                            classification target for s days is ``>= s``
lifetime_days          int64      []        last active day (whole log), day 0 = first row
=====================  =========  ========  ==================================================

The serving schema (``with_labels=False``) has only the input features, so a client
sends examples without labels.
"""
from __future__ import annotations

import dataclasses

USER = "user"
HYPEREDGE = "hyperedge"
INCIDENCE = "incidence"

USER_ID = "user_id"
CATEGORICAL_IDS = "categorical_ids"
STAT_VALUES = "stat_values"
STAT_BINS = "stat_bins"
SEQ_VALUES = "seq_values"
SEQ_TOKENS = "seq_tokens"
OBS_DAYS = "obs_days"
LIFETIME_DAYS = "lifetime_days"

# Sequence token ids (seq_tokens).
TOKEN_NOT_OBSERVED = 0
TOKEN_ZERO = 1
TOKEN_FIRST_BIN = 2


def lt_name(h: int) -> str:
    return f"lt_{h}"


def ltv_name(h: int) -> str:
    return f"ltv_{h}"


def label_mask_name(h: int) -> str:
    return f"label_mask_{h}"


def last_active_name(h: int) -> str:
    return f"last_active_day_{h}"


@dataclasses.dataclass(frozen=True)
class FeatureDims:
    """The sizes that fix the feature shapes of one dataset."""

    num_categorical: int
    num_statistical: int
    num_metrics: int
    observation_days: int
    horizons: tuple[int, ...]


def user_feature_specs(dims: FeatureDims, with_labels: bool) -> dict[str, tuple[str, list[int]]]:
    """Feature name -> (dtype name, shape) of the ``user`` node set."""
    specs = {
        USER_ID: ("string", []),
        CATEGORICAL_IDS: ("int64", [dims.num_categorical]),
        STAT_VALUES: ("float32", [dims.num_statistical]),
        STAT_BINS: ("int64", [dims.num_statistical]),
        SEQ_VALUES: ("float32", [dims.num_metrics, dims.observation_days]),
        SEQ_TOKENS: ("int64", [dims.num_metrics, dims.observation_days]),
        OBS_DAYS: ("int64", []),
    }
    if with_labels:
        for h in dims.horizons:
            specs[lt_name(h)] = ("float32", [])
            specs[ltv_name(h)] = ("float32", [])
            specs[label_mask_name(h)] = ("float32", [])
            specs[last_active_name(h)] = ("int64", [])
        specs[LIFETIME_DAYS] = ("int64", [])
    return specs


def label_feature_names(horizons) -> list[str]:
    names = []
    for h in horizons:
        names += [lt_name(h), ltv_name(h), label_mask_name(h), last_active_name(h)]
    return names + [LIFETIME_DAYS]


_DTYPE_ENUM = {"string": "DT_STRING", "int64": "DT_INT64", "float32": "DT_FLOAT"}


def graph_schema_pbtxt(dims: FeatureDims, with_labels: bool = True) -> str:
    """The GraphSchema in text format (what ``tfgnn.parse_schema`` reads)."""
    lines = [f'node_sets {{\n  key: "{USER}"\n  value {{']
    for name, (dtype, shape) in user_feature_specs(dims, with_labels).items():
        dims_txt = "".join(f" dim {{ size: {d} }}" for d in shape)
        lines.append(f'    features {{\n      key: "{name}"\n      value {{\n'
                     f'        dtype: {_DTYPE_ENUM[dtype]}\n'
                     f'        shape {{{dims_txt} }}\n      }}\n    }}')
    lines.append("  }\n}")
    lines.append(f'node_sets {{\n  key: "{HYPEREDGE}"\n  value {{\n  }}\n}}')
    lines.append(f'edge_sets {{\n  key: "{INCIDENCE}"\n  value {{\n'
                 f'    source: "{HYPEREDGE}"\n    target: "{USER}"\n  }}\n}}')
    return "\n".join(lines) + "\n"


def graph_schema(dims: FeatureDims, with_labels: bool = True):
    """The GraphSchema proto (imports TF-GNN)."""
    import tensorflow_gnn as tfgnn

    return tfgnn.parse_schema(graph_schema_pbtxt(dims, with_labels))
