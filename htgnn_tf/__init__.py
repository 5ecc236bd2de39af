"""htgnn: multi-horizon customer lifetime value prediction with HT-GNN.

TF-GNN needs Keras 2, so ``TF_USE_LEGACY_KERAS=1`` is set here, before any module of
this package imports TensorFlow. Import ``htgnn_tf`` before ``tensorflow``.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__: list[str] = []
