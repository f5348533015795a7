"""Meta's official checkpoints: download into a cache, verified by the hash in their file names."""

from __future__ import annotations

import logging
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from .presets import OFFICIAL_CHECKPOINTS, sha256_of

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """The checkpoint could not be fetched (no network, or a corrupt file)."""


def download_official(model_type: str, cache_dir: Path, *, timeout_s: float = 20.0) -> Path:
    """The official checkpoint of ``model_type`` in ``cache_dir/checkpoints``, downloaded if missing.

    Meta's file names end in the first 6 hex digits of the file's sha256 (sam_vit_b_01ec64.pth);
    a file that does not match is deleted and reported.
    """
    url = OFFICIAL_CHECKPOINTS[model_type]
    target = Path(cache_dir) / "checkpoints" / url.rsplit("/", 1)[-1]
    expected = target.stem.rsplit("_", 1)[-1]
    if target.is_file() and sha256_of(target).startswith(expected):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {exc}") from exc
    if not sha256_of(partial).startswith(expected):
        partial.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the downloaded file's sha256 does not start with {expected}")
    partial.replace(target)
    return target


def checkpoint_or_none(model_type: str, cache_dir: Path) -> Optional[Path]:
    """The official checkpoint, or None (with a warning) where it cannot be downloaded."""
    try:
        return download_official(model_type, cache_dir)
    except DownloadError as exc:
        log.warning("%s", exc)
        return None
