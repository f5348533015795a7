"""Official checkpoints (Meta's SAM, MobileSAM's): downloaded into a cache, verified by their published digest.

Meta's file names end in the first 6 hex digits of the file's MD5 (``sam_vit_b_01ec64.pth`` has
MD5 ``01ec64d2...``), not of its sha256. The full MD5s below are the ones other SAM projects'
download tables list (IOPaint's ``iopaint/plugins/interactive_seg.py``, lama-cleaner's
``plugins/interactive_seg.py``, and others, all agreeing); each agrees with its file name.

Where the files come from is a ``CheckpointSource`` (base URL, file table, timeout), passed in by
the caller, so tests point it at a loopback server. A download shows its progress (tqdm), resumes
a partial ``.part`` file with an HTTP range request where the server honours one, and never
leaves a file that does not match: a mismatch deletes it and says so. torch.hub's
``download_url_to_file`` would draw the bar too, but has neither a timeout (a stalled connection
would hang the demo) nor resumption, hence the short read loop here.

MobileSAM's ``mobile_sam.pt`` (vit_t) lives in its GitHub repository, with no published checksum:
it is fetched from a pinned commit and verified by its git blob id (the SHA-1 git itself keeps of
the file, ``git ls-tree`` of that commit), so what arrives is the file that commit holds.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

log = logging.getLogger(__name__)

META_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class OfficialFile:
    """A checkpoint file and its full MD5 (the name ends in the MD5's first 6 hex digits, as Meta's
    do), or, for a file in a git repository, its git blob id and the URL folder it is fetched from."""

    name: str
    md5: str = ""
    git_blob: str = ""
    base_url: str = ""  # empty: the CheckpointSource's base_url

    def __post_init__(self) -> None:
        if self.git_blob:
            if self.md5 or not re.fullmatch(r"[0-9a-f]{40}", self.git_blob):
                raise ValueError(f"{self.name}: git blob id {self.git_blob!r} is not 40 lowercase hex digits (and no md5 beside it)")
            return
        if not re.fullmatch(r"[0-9a-f]{32}", self.md5):
            raise ValueError(f"{self.name}: md5 {self.md5!r} is not 32 lowercase hex digits")
        suffix = Path(self.name).stem.rsplit("_", 1)[-1]
        if suffix != self.md5[:6]:
            raise ValueError(f"{self.name}: the name ends in {suffix!r}, but its md5 starts with {self.md5[:6]!r}")

    @property
    def digest_name(self) -> str:
        return "git blob id" if self.git_blob else "MD5"

    @property
    def digest(self) -> str:
        return self.git_blob or self.md5

    def digest_of(self, path: Path) -> str:
        return git_blob_of(path) if self.git_blob else md5_of(path)


OFFICIAL_FILES: Mapping[str, OfficialFile] = {
    "vit_b": OfficialFile("sam_vit_b_01ec64.pth", "01ec64d29a2fca3f0661936605ae66f8"),
    "vit_l": OfficialFile("sam_vit_l_0b3195.pth", "0b3195507c641ddb6910d2bb5adee89c"),
    "vit_h": OfficialFile("sam_vit_h_4b8939.pth", "4b8939a88964f0f4ff5f5b2642c598a6"),
}
#: MobileSAM's weights at the repository's newest commit (34bbbfd, 2024-11-20; the file last
#: changed in a509aac, 2023-06-29); the blob id is that commit's ``git ls-tree HEAD weights/``.
MOBILE_SAM_COMMIT = "34bbbfdface3c18e5221aa7de6032d7220c6c6a1"
MOBILE_SAM_FILES: Mapping[str, OfficialFile] = {
    "vit_t": OfficialFile(
        "mobile_sam.pt",
        git_blob="7ef2d090979fd9853adf17b7a99c8b94a1c5a6a7",
        base_url=f"https://github.com/ChaoningZhang/MobileSAM/raw/{MOBILE_SAM_COMMIT}/weights/",
    ),
}


@dataclass(frozen=True, kw_only=True)
class CheckpointSource:
    """Where official checkpoints are downloaded from: ``base_url`` + each file's name."""

    base_url: str = META_BASE_URL
    files: Mapping[str, OfficialFile] = field(default_factory=lambda: {**OFFICIAL_FILES, **MOBILE_SAM_FILES})
    timeout_s: float = 30.0  # connecting, and each read: a stalled download fails instead of hanging
    progress: bool = True  # a tqdm bar on stderr

    def file(self, model_type: str) -> OfficialFile:
        try:
            return self.files[model_type]
        except KeyError:
            raise ValueError(f"model type {model_type!r}: no official checkpoint; expected one of {sorted(self.files)}") from None

    def url(self, model_type: str) -> str:
        official = self.file(model_type)
        return (official.base_url or self.base_url).rstrip("/") + "/" + official.name


META = CheckpointSource()


class DownloadError(RuntimeError):
    """The checkpoint could not be fetched (no network), or what came was not the file (wrong MD5)."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob_of(path: Path) -> str:
    """The file's git blob id: SHA-1 of ``blob <size>\\0`` and the content, as ``git hash-object`` computes it."""
    digest = hashlib.sha1(f"blob {Path(path).stat().st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout_s: float):
    """The response for ``url`` from byte ``offset`` on, and the offset it really starts at (0 if the
    server ignored the range), or None when the range starts at the end of the file."""
    headers = {"User-Agent": "sam-triton", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range not satisfiable: the part already holds the whole file (or more)
            exc.close()
            return None, offset
        raise
    if offset and response.status == 206:
        start = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if start and int(start.group(1)) == offset:
            return response, offset
    return response, 0


def _fetch(url: str, part: Path, *, timeout_s: float, progress: bool) -> None:
    """Download ``url`` into ``part``, appending to what an earlier, interrupted download left there."""
    from tqdm import tqdm

    have = part.stat().st_size if part.is_file() else 0
    response, start = _open(url, have, timeout_s)
    if response is None:
        return
    if have and start == 0:
        log.info("%s: the server does not resume downloads; starting over", url)
    elif have:
        log.info("resuming %s at %.1f MB", url, have / 1e6)
    length = response.headers.get("Content-Length")
    with (
        response,
        open(part, "ab" if start else "wb") as out,
        tqdm(
            total=start + int(length) if length else None,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
        ) as bar,
    ):
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            bar.update(len(chunk))


def download_official(model_type: str, cache_dir: Path, *, source: CheckpointSource = META) -> Path:
    """The official checkpoint of ``model_type`` in ``cache_dir/checkpoints``, downloaded if missing.

    A cached file whose MD5 is wrong is downloaded again; a download whose MD5 is wrong is deleted
    and raises DownloadError; an interrupted one keeps its ``.part`` file for the next call to resume.
    """
    official = source.file(model_type)
    url = source.url(model_type)
    target = Path(cache_dir) / "checkpoints" / official.name
    if target.is_file():
        if official.digest_of(target) == official.digest:
            return target
        log.warning(
            "%s: its %s is not %s (the published one of %s); downloading it again",
            target,
            official.digest_name,
            official.digest,
            official.name,
        )
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    log.info("downloading %s to %s", url, target)
    try:
        _fetch(url, part, timeout_s=source.timeout_s, progress=source.progress)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # timeouts, HTTP errors, cut connections
        kept = part.stat().st_size if part.is_file() else 0
        resume = f"; the {kept} bytes downloaded so far stay in {part} for the next run to resume" if kept else ""
        raise DownloadError(f"could not download {url}: {exc}{resume}") from exc
    digest = official.digest_of(part)
    if digest != official.digest:
        part.unlink()
        raise DownloadError(
            f"{url}: the downloaded file's {official.digest_name} is {digest}, expected {official.digest} (the published"
            f" {official.digest_name} of {official.name}); the file was deleted"
        )
    part.replace(target)
    return target


def checkpoint_or_none(model_type: str, cache_dir: Path, *, source: CheckpointSource = META) -> Optional[Path]:
    """The official checkpoint, or None (with a warning) where it cannot be downloaded."""
    try:
        return download_official(model_type, cache_dir, source=source)
    except DownloadError as exc:
        log.warning("%s", exc)
        return None
