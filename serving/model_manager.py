"""Version directories on disk -> loaded SavedModels, with TF Serving's version semantics.

A model lives under a base path as ``<base>/<int>/saved_model.pb`` (+ ``variables/``).
As TF Serving's default ("latest") version policy does, the manager serves the highest
version found and polls the base path: when a higher (or, after a deletion, a different
highest) version appears, it is loaded while the old one keeps answering; only once the
new one is available does the swap happen and the old one is unloaded. Requests already
running on the old version hold their own reference and finish on it. A version whose
load fails is reported in ``version_states`` (``END`` with the error) and the old version
stays; it is retried only when its ``saved_model.pb`` changes. If the base path holds no
version at all, the served version is unloaded (TF Serving does the same).

Writers should write a new version into a temporary directory and rename it to its
number when complete (the usual way to publish a SavedModel for TF Serving).

Only TensorFlow is imported: a SavedModel exported for serving must load without
TF-GNN or project code.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Mapping

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2

from serving.errors import ServingError, status_code_from_value

_LOG = logging.getLogger(__name__)

SAVED_MODEL_FILE = "saved_model.pb"
SERVE_TAG = "serve"
_State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass(frozen=True)
class LoadedVersion:
    """One loaded SavedModel version.

    ``signature_defs`` are the SignatureDefs of the ``serve`` MetaGraph as stored in
    ``saved_model.pb`` (what ``GetModelMetadata`` returns and what requests are checked
    against); ``signatures`` are the callable concrete functions of the loaded object.
    """

    version: int
    path: str
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
    signatures: Mapping[str, object]
    root: object  # the loaded trackable object; keeps the variables alive


@dataclasses.dataclass(frozen=True)
class VersionState:
    """The state of one version as ``GetModelStatus`` reports it."""

    state: int  # ModelVersionStatus.State
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def list_versions(base_path: str) -> list[int]:
    """Version numbers of the complete version directories under ``base_path``, ascending."""
    versions = []
    for entry in os.listdir(base_path):
        if entry.isdigit() and os.path.isfile(os.path.join(base_path, entry, SAVED_MODEL_FILE)):
            versions.append(int(entry))
    return sorted(versions)


def _file_fingerprint(path: str) -> tuple[float, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime, stat.st_size


def read_signature_defs(export_dir: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDef map of the MetaGraph tagged ``serve`` in ``saved_model.pb``."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, SAVED_MODEL_FILE), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"no MetaGraph tagged {SERVE_TAG!r} in {export_dir!r}")


def load_version(base_path: str, version: int) -> LoadedVersion:
    """Loads ``<base_path>/<version>`` with ``tf.saved_model.load``."""
    path = os.path.join(base_path, str(version))
    signature_defs = read_signature_defs(path)
    root = tf.saved_model.load(path, tags=[SERVE_TAG])
    return LoadedVersion(version=version, path=path, signature_defs=signature_defs,
                         signatures=dict(root.signatures), root=root)


class ModelManager:
    """Serves the highest version of one model and follows the base path for new ones.

    Args:
      name: the model name clients use.
      base_path: the directory of version directories.
      poll_wait_seconds: interval of the background poller started by ``start()``.
    """

    def __init__(self, *, name: str, base_path: str, poll_wait_seconds: float = 1.0):
        if not os.path.isdir(base_path):
            raise ValueError(f"base_path is not a directory: {base_path!r}")
        if not poll_wait_seconds > 0:
            raise ValueError(f"poll_wait_seconds must be > 0, got {poll_wait_seconds!r}")
        self.name = name
        self.base_path = base_path
        self.poll_wait_seconds = poll_wait_seconds
        self._lock = threading.Lock()
        self._serving: LoadedVersion | None = None
        self._states: dict[int, VersionState] = {}
        self._failed: dict[int, tuple[float, int] | None] = {}  # version -> fingerprint
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # -- requests ---------------------------------------------------------------------
    def get(self, version: int | None = None) -> LoadedVersion:
        """The loaded version asked for (``None`` = the served one) or NOT_FOUND."""
        with self._lock:
            serving = self._serving
        if serving is None or (version is not None and version != serving.version):
            spec = f"Latest({self.name})" if version is None else f"Specific({self.name}, {version})"
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {spec}")
        return serving

    def version_states(self) -> dict[int, VersionState]:
        """Every version seen since start, highest first (as TF Serving lists them)."""
        with self._lock:
            return dict(sorted(self._states.items(), reverse=True))

    # -- polling ----------------------------------------------------------------------
    def poll_once(self) -> None:
        """Scans the base path once and loads / swaps / unloads as needed."""
        try:
            on_disk = list_versions(self.base_path)
        except OSError as error:
            _LOG.error("Cannot list base path %s of model %s: %s", self.base_path, self.name, error)
            return
        with self._lock:
            current = self._serving
        if not on_disk:
            if current is not None:
                _LOG.warning("No versions of model %s under %s; unloading version %d",
                             self.name, self.base_path, current.version)
                self._swap(None)
            return
        target = on_disk[-1]
        if current is not None and current.version == target:
            return
        marker = _file_fingerprint(os.path.join(self.base_path, str(target), SAVED_MODEL_FILE))
        if target in self._failed and self._failed[target] == marker:
            return
        self._set_state(target, VersionState(_State.LOADING))
        _LOG.info("Loading version %d of model %s", target, self.name)
        try:
            loaded = load_version(self.base_path, target)
        except Exception as error:  # a broken export must never stop the server
            code = (status_code_from_value(error.error_code) if isinstance(error, tf.errors.OpError)
                    else grpc.StatusCode.UNKNOWN)
            _LOG.error("Failed to load version %d of model %s: %s", target, self.name, error)
            self._failed[target] = marker
            self._set_state(target, VersionState(_State.END, code, f"{type(error).__name__}: {error}"))
            return
        self._failed.pop(target, None)
        self._swap(loaded)
        _LOG.info("Serving version %d of model %s", target, self.name)

    def _set_state(self, version: int, state: VersionState) -> None:
        with self._lock:
            self._states[version] = state

    def _swap(self, new: LoadedVersion | None) -> None:
        """Makes ``new`` the served version; the old one ends once in-flight calls drop it."""
        with self._lock:
            old, self._serving = self._serving, new
            if new is not None:
                self._states[new.version] = VersionState(_State.AVAILABLE)
            if old is not None:
                self._states[old.version] = VersionState(_State.END)

    def start(self) -> None:
        """Loads the highest version now, then polls in a background thread."""
        self.poll_once()
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll_loop, name=f"poll-{self.name}", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_wait_seconds):
            self.poll_once()

    def stop(self) -> None:
        """Stops polling and unloads the served version."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None
        self._swap(None)
