"""Test set-up: Keras 2 for TF-GNN, quiet TF logs, one thread pool per process."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import htgnn_tf  # noqa: E402,F401  (sets the Keras 2 switch before TensorFlow loads)
