"""Find Triton's ``perf_analyzer``, or fetch it into a git-ignored tools folder.

The binary ships inside NVIDIA's ``tritonclient`` manylinux wheel on PyPI (under
``tritonclient-<v>.data/data/bin/``). It links two libraries most machines lack: ``libb64.so.0d``
and ``libcudart.so.12`` (loaded even on CPU). The ``nvidia-pytriton`` wheel of our ``[serve]``
extra bundles both (renamed by auditwheel), so a ``lib/`` folder of symlinks under their expected
names makes the binary run with no apt and no CUDA install. Elsewhere Debian's ``libb64-0d`` and
pip's ``nvidia-cuda-runtime-cu12`` provide them.

Order of search: ``$PERF_ANALYZER``; a ``perf_analyzer`` on PATH that runs (NGC's ``-py3-sdk``
image, or ``pip install perf-analyzer`` where glibc >= 2.38); the one pip put in this
environment's ``bin/`` with tritonclient's manylinux wheel; one fetched into our tools folder
before; else fetch it. ``python -m sam_triton.perf.benchmark.install`` does this ahead of time; a second run
only checks.
"""

from __future__ import annotations

import glob
import logging
import os
import platform
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

#: The tritonclient wheel whose perf_analyzer we fetch: the version of the embedded tritonserver.
PERF_ANALYZER_VERSION = "2.51.0"
WHEEL_PLATFORMS = {"x86_64": "manylinux1_x86_64"}
#: Library name perf_analyzer asks for -> glob patterns of files that provide it.
LIBRARY_SOURCES: Dict[str, Tuple[str, ...]] = {
    "libb64.so.0d": ("nvidia_pytriton.libs/libb64-*.so.0d",),
    "libcudart.so.12": ("nvidia_pytriton.libs/libcudart-*.so.12*", "nvidia/cuda_runtime/lib/libcudart.so.12"),
}
VERSION_TIMEOUT_S = 30
FETCH_TIMEOUT_S = 600


class PerfAnalyzerNotFound(RuntimeError):
    """perf_analyzer is not here and could not be fetched; the message says how to get it."""


@dataclass(frozen=True)
class PerfAnalyzer:
    """A runnable perf_analyzer: the binary and the library folders it needs on LD_LIBRARY_PATH."""

    binary: Path
    library_dirs: Tuple[Path, ...] = ()

    def environment(self) -> Dict[str, str]:
        env = dict(os.environ)
        if self.library_dirs:
            paths = [str(p) for p in self.library_dirs] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
            env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
        return env

    def version(self) -> str:
        """perf_analyzer's own version line; raises PerfAnalyzerNotFound if it does not run."""
        try:
            done = subprocess.run(
                [str(self.binary), "--version"], capture_output=True, text=True, env=self.environment(), timeout=VERSION_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PerfAnalyzerNotFound(f"{self.binary} does not run: {exc}") from exc
        text = (done.stdout + done.stderr).strip()
        if done.returncode != 0 or "Perf Analyzer Version" not in text:
            raise PerfAnalyzerNotFound(f"{self.binary} does not run (exit {done.returncode}): {text[-500:]}")
        return text.splitlines()[-1]


def default_tools_dir() -> Path:
    """``$SAM_TRITON_TOOLS``; else ``.tools/`` of the source checkout; else the user cache."""
    if os.environ.get("SAM_TRITON_TOOLS"):
        return Path(os.environ["SAM_TRITON_TOOLS"])
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "perf" / "benchmark" / "install.py").is_file():
        return checkout / ".tools"
    from sam_triton.build.server.tritonserver import default_cache_dir

    return default_cache_dir() / "tools"


def _site_dirs() -> List[Path]:
    dirs = [Path(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])]
    dirs += [Path(p) for p in sys.path if p.endswith("site-packages")]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def link_libraries(lib_dir: Path, names: Sequence[str] = tuple(LIBRARY_SOURCES)) -> List[str]:
    """Symlink each needed library into ``lib_dir`` from the installed wheels; returns the names not found."""
    lib_dir.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in names:
        target = lib_dir / name
        if target.exists():
            continue
        found = [hit for site in _site_dirs() for pattern in LIBRARY_SOURCES[name] for hit in sorted(glob.glob(str(site / pattern)))]
        if not found:
            missing.append(name)
            continue
        if target.is_symlink():
            target.unlink()  # a dangling link from an older environment
        target.symlink_to(found[0])
    return missing


def _candidate(binary: Path, library_dirs: Tuple[Path, ...] = ()) -> Optional[PerfAnalyzer]:
    tool = PerfAnalyzer(binary, library_dirs)
    try:
        log.debug("found %s", tool.version())
    except PerfAnalyzerNotFound as exc:
        log.debug("not usable: %s", exc)
        return None
    return tool


def _extract_binary(wheel: Path, bin_dir: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.endswith(".data/data/bin/perf_analyzer")]
        if not members:
            raise PerfAnalyzerNotFound(f"{wheel.name} holds no perf_analyzer")
        bin_dir.mkdir(parents=True, exist_ok=True)
        target = bin_dir / "perf_analyzer"
        with archive.open(members[0]) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return target


def fetch(tools_dir: Path, version: str = PERF_ANALYZER_VERSION, *, find_links: Optional[Path] = None) -> Path:
    """Download the tritonclient wheel with pip and unpack perf_analyzer into ``tools_dir``; returns its folder.

    pip asks its configured index, or only the folder of wheels ``find_links`` (``--no-index``: offline mirrors, tests).
    """
    machine = platform.machine()
    if sys.platform != "linux" or machine not in WHEEL_PLATFORMS:
        raise PerfAnalyzerNotFound(
            f"no perf_analyzer wheel is known for {sys.platform}/{machine}: use NVIDIA's"
            " nvcr.io/nvidia/tritonserver:<yy.mm>-py3-sdk image, or `pip install perf-analyzer` (glibc >= 2.38)"
        )
    home = Path(tools_dir) / f"perf_analyzer-{version}"
    Path(tools_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tools_dir) as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            WHEEL_PLATFORMS[machine],
            f"tritonclient=={version}",
            "-d",
            scratch,
        ]
        if find_links is not None:
            command[4:4] = ["--no-index", "--find-links", str(find_links)]
        log.info("fetching perf_analyzer %s: %s", version, " ".join(command))
        done = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
        wheels = sorted(Path(scratch).glob("tritonclient-*.whl"))
        if done.returncode != 0 or not wheels:
            raise PerfAnalyzerNotFound(f"pip could not download tritonclient=={version}: {done.stderr.strip()[-800:]}")
        staged = Path(scratch) / "staged"
        _extract_binary(wheels[0], staged / "bin")
        shutil.rmtree(home, ignore_errors=True)
        staged.rename(home)  # appears whole, or not at all
    return home


def _unrunnable(binary: Path, missing: Sequence[str]) -> PerfAnalyzerNotFound:
    hint = f" (not found in any installed wheel: {', '.join(missing)})" if missing else ""
    return PerfAnalyzerNotFound(
        f"{binary} does not run{hint}. It needs libb64.so.0d and libcudart.so.12: pip install 'sam-triton[serve]'"
        " (nvidia-pytriton bundles both), or apt-get install libb64-0d and pip install nvidia-cuda-runtime-cu12."
        " See DEVELOPERS.md."
    )


def ensure_perf_analyzer(tools_dir: Optional[Path] = None, *, allow_fetch: bool = True) -> PerfAnalyzer:
    """A perf_analyzer that runs here: found, or fetched into ``tools_dir`` (idempotent, fast when present).

    Where pip installed tritonclient's manylinux wheel, its perf_analyzer is already in this
    environment's ``bin/``: then only the library links are made, in ``tools_dir/lib``.
    """
    if os.environ.get("PERF_ANALYZER"):
        tool = _candidate(Path(os.environ["PERF_ANALYZER"]))
        if tool is None:
            raise PerfAnalyzerNotFound(f"$PERF_ANALYZER={os.environ['PERF_ANALYZER']} does not run")
        return tool
    on_path = shutil.which("perf_analyzer")
    if on_path and (tool := _candidate(Path(on_path))):
        return tool
    tools_dir = Path(tools_dir) if tools_dir else default_tools_dir()
    lib_dir = tools_dir / "lib"
    missing = link_libraries(lib_dir)
    installed = Path(sysconfig.get_path("scripts")) / "perf_analyzer"
    if installed.is_file() and (tool := _candidate(installed, (lib_dir,))):
        return tool
    binary = tools_dir / f"perf_analyzer-{PERF_ANALYZER_VERSION}" / "bin" / "perf_analyzer"
    if not binary.is_file():
        if not allow_fetch:
            raise PerfAnalyzerNotFound(f"perf_analyzer is not in {binary.parent}; run `python -m sam_triton.perf.benchmark.install`")
        fetch(tools_dir)
    tool = _candidate(binary, (lib_dir,))
    if tool is None:
        raise _unrunnable(binary, missing)
    return tool


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sam_triton.perf.benchmark.install", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tools-dir", type=Path, help="Where to unpack perf_analyzer (default: .tools/ of the checkout, or $SAM_TRITON_TOOLS)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        tool = ensure_perf_analyzer(args.tools_dir)
    except PerfAnalyzerNotFound as exc:
        print(f"perf_analyzer: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{tool.binary} ({tool.version()})"
        + (f"; LD_LIBRARY_PATH={os.pathsep.join(map(str, tool.library_dirs))}" if tool.library_dirs else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
