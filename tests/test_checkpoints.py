"""The official checkpoint's download, for real over HTTP: a loopback server (the standard library's
http.server in a thread) serves small files named as Meta names theirs, with their MD5 prefix."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from pathlib import Path
from typing import Iterator, List

import numpy as np
import pytest

from sam_triton.build.demo import DemoConfig, choose_weights
from sam_triton.build.models.checkpoints import (
    OFFICIAL_FILES,
    CheckpointSource,
    DownloadError,
    OfficialFile,
    checkpoint_or_none,
    download_official,
    md5_of,
)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler with single ``bytes=N-`` ranges (what a resumed download asks for)
    when the server's ``ranges`` is set; every request's Range header is recorded."""

    def do_GET(self) -> None:
        wanted = self.headers.get("Range")
        self.server.seen.append((self.path, wanted))
        match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        path = Path(self.translate_path(self.path))
        if not (self.server.ranges and match and path.is_file()):
            return super().do_GET()
        data, start = path.read_bytes(), int(match.group(1))
        if start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


class Loopback:
    def __init__(self, root: Path, *, ranges: bool) -> None:
        handler = lambda *a, **k: RangeHandler(*a, directory=str(root), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.seen: List[tuple] = []
        self.httpd.ranges = ranges
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"

    @property
    def seen(self) -> List[tuple]:
        return self.httpd.seen

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def served(tmp_path) -> Iterator[tuple]:
    """(server, source, payload): 300 kB of seeded bytes published as sam_test_<md5[:6]>.pth with their MD5."""
    payload = np.random.default_rng(7).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    md5 = hashlib.md5(payload).hexdigest()
    official = OfficialFile(f"sam_test_{md5[:6]}.pth", md5)
    (tmp_path / "www" / "files").mkdir(parents=True)
    (tmp_path / "www" / "files" / official.name).write_bytes(payload)
    server = Loopback(tmp_path / "www", ranges=True)
    try:
        yield server, CheckpointSource(base_url=server.url, files={"vit_b": official}, timeout_s=10), payload
    finally:
        server.close()


def checkpoint_files(cache_dir: Path) -> List[str]:
    return sorted(p.name for p in (cache_dir / "checkpoints").iterdir()) if (cache_dir / "checkpoints").is_dir() else []


def test_meta_file_names_carry_the_md5_prefix():
    """The table's MD5s agree with Meta's file names, which end in the MD5's first 6 hex digits (not the sha256's)."""
    assert {k: (f.name, f.md5[:6]) for k, f in OFFICIAL_FILES.items()} == {
        "vit_b": ("sam_vit_b_01ec64.pth", "01ec64"),
        "vit_l": ("sam_vit_l_0b3195.pth", "0b3195"),
        "vit_h": ("sam_vit_h_4b8939.pth", "4b8939"),
    }
    with pytest.raises(ValueError, match="ends in '01ec64', but its md5 starts with 'aaaaaa'"):
        OfficialFile("sam_vit_b_01ec64.pth", "a" * 32)


def test_a_file_matching_its_md5_is_downloaded_once_with_progress(served, tmp_path, capsys):
    server, source, payload = served
    cache = tmp_path / "cache"
    path = download_official("vit_b", cache, source=source)
    assert path == cache / "checkpoints" / source.files["vit_b"].name and path.read_bytes() == payload
    assert checkpoint_files(cache) == [path.name]  # no .part left behind
    progress = capsys.readouterr().err
    assert "100%" in progress and "293k" in progress, progress  # tqdm's bar: 300000 B = 293 KiB
    again = download_official("vit_b", cache, source=source)
    assert again == path and len(server.seen) == 1  # the cached file is checked (MD5), not fetched again


def test_a_corrupt_download_is_refused_and_removed(served, tmp_path):
    _server, source, payload = served
    served_file = tmp_path / "www" / "files" / source.files["vit_b"].name
    served_file.write_bytes(payload[:1000] + bytes([payload[1000] ^ 0xFF]) + payload[1001:])  # one byte flipped
    cache = tmp_path / "cache"
    with pytest.raises(
        DownloadError,
        match=rf"the downloaded file's MD5 is [0-9a-f]{{32}}, expected {source.files['vit_b'].md5}"
        r" \(the published MD5 of sam_test_\w+\.pth\); the file was deleted",
    ):
        download_official("vit_b", cache, source=source)
    assert checkpoint_files(cache) == []
    assert checkpoint_or_none("vit_b", cache, source=source) is None  # the demo's path: a warning, then random weights


def test_an_interrupted_download_resumes_from_its_part_file(served, tmp_path):
    server, source, payload = served
    name = source.files["vit_b"].name
    (tmp_path / "cache" / "checkpoints").mkdir(parents=True)
    (tmp_path / "cache" / "checkpoints" / f"{name}.part").write_bytes(payload[:123_456])
    path = download_official("vit_b", tmp_path / "cache", source=source)
    assert server.seen == [(f"/files/{name}", "bytes=123456-")]
    assert path.read_bytes() == payload and checkpoint_files(tmp_path / "cache") == [name]


def test_a_server_without_ranges_restarts_the_download(served, tmp_path):
    server, source, payload = served
    server.httpd.ranges = False  # plain SimpleHTTPRequestHandler: ignores Range, answers 200 with the whole file
    name = source.files["vit_b"].name
    (tmp_path / "cache" / "checkpoints").mkdir(parents=True)
    (tmp_path / "cache" / "checkpoints" / f"{name}.part").write_bytes(payload[:5000])
    assert download_official("vit_b", tmp_path / "cache", source=source).read_bytes() == payload


def test_a_cached_file_with_the_wrong_md5_is_downloaded_again(served, tmp_path):
    _server, source, payload = served
    cached = tmp_path / "cache" / "checkpoints" / source.files["vit_b"].name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(payload[:-1])  # truncated
    assert download_official("vit_b", tmp_path / "cache", source=source).read_bytes() == payload
    assert md5_of(cached) == source.files["vit_b"].md5


def test_no_server_is_a_download_error_naming_the_url(tmp_path):
    server = Loopback(tmp_path, ranges=False)
    url = server.url
    server.close()  # nothing listens on that port any more
    source = CheckpointSource(base_url=url, timeout_s=5)
    with pytest.raises(DownloadError, match=rf"could not download {re.escape(url)}sam_vit_b_01ec64\.pth: "):
        download_official("vit_b", tmp_path / "cache", source=source)
    with pytest.raises(
        ValueError, match=r"model type 'tiny': no official checkpoint; expected one of \['vit_b', 'vit_h', 'vit_l', 'vit_t'\]"
    ):
        download_official("tiny", tmp_path / "cache", source=source)


def test_the_demo_uses_the_downloaded_checkpoint(served, tmp_path, monkeypatch):
    _server, source, payload = served
    monkeypatch.delenv("SAM_CHECKPOINT", raising=False)
    config = DemoConfig(out_dir=tmp_path / "out", repository=tmp_path / "repo", cache_dir=tmp_path / "cache", checkpoints=source)
    choice = choose_weights(config)
    assert choice.checkpoint == tmp_path / "cache" / "checkpoints" / source.files["vit_b"].name
    assert choice.checkpoint.read_bytes() == payload


def test_a_file_in_a_git_repository_is_verified_by_its_git_blob_id(tmp_path):
    """MobileSAM's mobile_sam.pt has no published checksum: its git blob id (git hash-object) is checked."""
    from sam_triton.build.models.checkpoints import MOBILE_SAM_FILES, git_blob_of

    payload = np.random.default_rng(8).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    blob = hashlib.sha1(b"blob %d\0" % len(payload) + payload).hexdigest()
    (tmp_path / "www" / "weights").mkdir(parents=True)
    (tmp_path / "www" / "weights" / "mobile_sam.pt").write_bytes(payload)
    server = Loopback(tmp_path / "www", ranges=True)
    try:
        good = OfficialFile("mobile_sam.pt", git_blob=blob, base_url=server.url.replace("/files/", "/weights/"))
        path = download_official("vit_t", tmp_path / "cache", source=CheckpointSource(files={"vit_t": good}, timeout_s=10))
        assert path.read_bytes() == payload and git_blob_of(path) == blob
        bad = OfficialFile("mobile_sam.pt", git_blob="0" * 40, base_url=server.url.replace("/files/", "/weights/"))
        with pytest.raises(DownloadError, match=r"git blob id is [0-9a-f]{40}, expected 0{40}"):
            download_official("vit_t", tmp_path / "other", source=CheckpointSource(files={"vit_t": bad}, timeout_s=10))
    finally:
        server.close()
    assert MOBILE_SAM_FILES["vit_t"].base_url.startswith("https://github.com/ChaoningZhang/MobileSAM/raw/")


def test_demo_model_type_vit_t_falls_back_to_random_vit_t_weights_offline(tmp_path, monkeypatch, caplog):
    """`demo --model-type vit_t` where MobileSAM's file cannot be fetched: seeded random vit_t weights, said loudly."""
    monkeypatch.delenv("SAM_CHECKPOINT", raising=False)
    server = Loopback(tmp_path, ranges=False)
    url = server.url
    server.close()  # nothing listens there
    offline = CheckpointSource(files={"vit_t": OfficialFile("mobile_sam.pt", git_blob="1" * 40, base_url=url)}, timeout_s=5)
    config = DemoConfig(
        out_dir=tmp_path / "out", repository=tmp_path / "repo", cache_dir=tmp_path / "cache", model_type="vit_t", checkpoints=offline
    )
    with caplog.at_level("WARNING"):
        choice = choose_weights(config)
    assert choice.checkpoint is None and choice.model_type == "vit_t"
    assert "SEEDED RANDOM vit_t WEIGHTS" in caplog.text and "mobile_sam.pt" in caplog.text
