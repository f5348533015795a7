"""What the session studies (sessions_link, sessions_load, sessions_soak) share: a python-runtime
repository of an export served on free loopback ports, the machine's line, and their report files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from sam_triton.build.repository.assemble import RepositoryOptions, assemble
from sam_triton.build.server.tritonserver import ServerConfig, TritonServer


def serve_python_repository(onnx_dir: Path, repository_dir: Path, *, cache_dir: Path, log_path: Path, **options: Any) -> TritonServer:
    """Write the python runtime's repository of ``onnx_dir`` (``options``: RepositoryOptions fields) and serve it, READY."""
    repository = assemble(repository_dir, RepositoryOptions(runtime="python", **options), onnx_dir=onnx_dir)
    return TritonServer(ServerConfig.on_free_ports(repository), log_path=log_path, cache_dir=cache_dir).start()


def command(module: str, argv: Optional[Sequence[str]]) -> str:
    """The command line that made a report."""
    return f"python -m sam_triton.perf.studies.{module} " + " ".join(argv if argv is not None else sys.argv[1:])


def machine() -> str:
    return f"{os.cpu_count()} CPUs, no GPU"


def write_report(out: Path, report: Dict[str, Any], markdown: str) -> None:
    """``out``.json and ``out``.md, and the Markdown on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
