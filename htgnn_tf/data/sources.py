"""Resolves the event/profile file names of a dataset spec to local paths.

``package://<distribution>/<path>`` names a data file that an installed distribution
carries. It is found through the distribution's metadata (``importlib.metadata``); the
distribution's code is never imported. Known files are checked against their sha256
(:data:`KNOWN_SHA256`), so a corrupted or different copy fails loudly.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

PACKAGE_SCHEME = "package://"

# The CDNOW master log as carried by lifetimes==0.11.3.
CDNOW_MASTER = "package://lifetimes/lifetimes/datasets/CDNOW_master.txt"
KNOWN_SHA256 = {
    CDNOW_MASTER: "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef",
}
INSTALL_HINTS = {
    "lifetimes": "pip install lifetimes==0.11.3 (or `make venv`, which installs it)",
}


class SourceError(FileNotFoundError):
    """An input file cannot be found or is not the expected file."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve(name: str) -> str:
    """Returns a local path for a spec file name, checking known hashes."""
    if not name.startswith(PACKAGE_SCHEME):
        if "://" not in name and not Path(name).exists():
            raise SourceError(f"input file {name!r} does not exist")
        return name
    dist_name, _, inner = name[len(PACKAGE_SCHEME):].partition("/")
    hint = INSTALL_HINTS.get(dist_name, f"pip install {dist_name}")
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise SourceError(f"{name}: the distribution {dist_name!r} that carries this data "
                          f"file is not installed; install it with: {hint}") from None
    path = Path(dist.locate_file(inner))
    if not path.exists():
        raise SourceError(f"{name}: {dist_name} {dist.version} is installed but has no "
                          f"{inner}; install the expected version: {hint}")
    expected = KNOWN_SHA256.get(name)
    if expected and sha256_of(path) != expected:
        raise SourceError(f"{path} has sha256 {sha256_of(path)}, expected {expected}: the "
                          f"file is corrupted or a different version; reinstall: {hint}")
    return str(path)
