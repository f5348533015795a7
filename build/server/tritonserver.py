"""Start and stop a real tritonserver: the embedded one in the nvidia-pytriton wheel, or any other.

The wheel's server carries only the python backend. Its stub must sit in a backend directory of
our own (``--backend-directory``) beside ``libtriton_python.so``, with the wheel's bundled
libraries on ``LD_LIBRARY_PATH``; started with the current interpreter's ``bin`` first on PATH,
the stub imports this environment's numpy and onnxruntime. Readiness is polled over Triton's
HTTP health API (the launcher needs no gRPC client).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from sam_triton.client.transport.server_key import check_key, remove_key_file, write_key_file

from ..repository.model_config import read_configs, runtime_of
from .restricted_apis import DEFAULT_RESTRICTED, RESTRICTABLE_APIS, restriction_args, server_key

log = logging.getLogger(__name__)

LOG_TAIL_CHARS = 4000
#: How long past its --exit-timeout-secs tritonserver may take to exit before it is killed, and what
#: it logs when that timeout expires (after which it is killed at once).
STOP_GRACE_S = 15
EXIT_TIMEOUT_EXPIRED = "Exit timeout expired. Exiting immediately."
#: glibc malloc settings for tritonserver and its python stubs, unless the environment sets them:
#: request-sized buffers (MBs) are mmapped and returned when freed instead of fragmenting the heap,
#: in at most 2 arenas. Why: the soaks of docs/studies/soak_tiny_*.md and the README's Soak section.
MALLOC_DEFAULTS = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20), "MALLOC_ARENA_MAX": "2"}
# Triton logs: E... model_lifecycle.cc:642] "failed to load 'sam_decoder' version 1: Internal: ..."
LOAD_FAILURE = re.compile(r"failed to load '([^']+)' version \d+: (.*?)\"?$", re.MULTILINE)


class ServerStartError(RuntimeError):
    """tritonserver exited or did not become ready; the message carries Triton's own reason."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise ServerStartError(
            "the embedded tritonserver comes with nvidia-pytriton: pip install 'sam-triton[serve]'"
            " (or pass --tritonserver PATH to use another tritonserver binary)"
        ) from exc
    return Path(pytriton.__file__).parent


def embedded_tritonserver() -> Path:
    """The tritonserver binary inside the nvidia-pytriton wheel."""
    binary = _pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        raise ServerStartError(f"nvidia-pytriton is installed but has no tritonserver at {binary}")
    return binary


def embedded_library_path() -> Path:
    """The wheel's bundled shared libraries (the stub links their libcudart, no GPU needed)."""
    return _pytriton_root().parent / "nvidia_pytriton.libs"


def prepare_python_backend(backend_root: Path) -> Path:
    """Copy the wheel's python backend and this interpreter's stub into ``backend_root/python``."""
    source = _pytriton_root() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerStartError(f"nvidia-pytriton has no python backend stub for Python {version} (looked for {stub})")
    target = Path(backend_root) / "python"
    target.mkdir(parents=True, exist_ok=True)
    for path in [*(source / "backends" / "python").iterdir(), stub]:
        if path.is_file():
            dst = target / path.name
            if not dst.exists() or dst.stat().st_size != path.stat().st_size:
                shutil.copy2(path, dst)
    return Path(backend_root)


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How to run tritonserver. Defaults are the safe ones: loopback only, no model control, the
    shared-memory and model-repository APIs restricted to requests with the server's key.

    ``restricted_apis``: Triton APIs that need the key (see ``restricted_apis``); ``api_key``: the
    key, None for ``$SAM_TRITON_API_KEY`` or a new random one per ``TritonServer``, written to
    ``sam_triton.client.transport.server_key.key_file(grpc_port)`` for local clients while it runs.

    TLS on gRPC (tritonserver's flags, same names): ``grpc_use_ssl`` with ``grpc_server_cert`` and
    ``grpc_server_key`` (PEM files); ``grpc_use_ssl_mutual`` also asks clients for a certificate
    signed by ``grpc_root_cert``. ``grpc_header_forward_pattern``: a regex of request headers Triton
    passes to models as request parameters. HTTP stays plaintext (tritonserver has no TLS for it):
    keep it on loopback, or behind a gateway that terminates TLS.
    """

    repository: Path
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    tritonserver: Optional[Path] = None  # None: the embedded server from nvidia-pytriton
    backend_directory: Optional[Path] = None  # None with the embedded server: a prepared cache dir
    exit_timeout_s: int = 30
    log_verbose: int = 0
    restricted_apis: Tuple[str, ...] = DEFAULT_RESTRICTED
    api_key: Optional[str] = None
    grpc_use_ssl: bool = False
    grpc_use_ssl_mutual: bool = False
    grpc_server_cert: Optional[Path] = None
    grpc_server_key: Optional[Path] = None
    grpc_root_cert: Optional[Path] = None
    grpc_header_forward_pattern: Optional[str] = None
    extra_args: Tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.restricted_apis) - set(RESTRICTABLE_APIS))
        if unknown:
            raise ValueError(f"restricted_apis: {unknown} are not among Triton's restrictable {RESTRICTABLE_APIS}")
        if self.api_key is not None:
            check_key(self.api_key, "api_key")
        self._check_tls()
        if self.grpc_header_forward_pattern is not None:
            try:
                re.compile(self.grpc_header_forward_pattern)
            except re.error as exc:
                raise ValueError(f"grpc_header_forward_pattern: {self.grpc_header_forward_pattern!r} is not a regex ({exc})") from None

    def _check_tls(self) -> None:
        """TLS needs the server's certificate and key; mutual TLS also the clients' root; files exist."""
        files = {"grpc_server_cert": self.grpc_server_cert, "grpc_server_key": self.grpc_server_key, "grpc_root_cert": self.grpc_root_cert}
        if not self.tls:
            given = [name for name, path in files.items() if path is not None]
            if given:
                raise ValueError(f"{given[0]} is used only with grpc_use_ssl=True (or grpc_use_ssl_mutual=True)")
            return
        needed = ["grpc_server_cert", "grpc_server_key"] + (["grpc_root_cert"] if self.grpc_use_ssl_mutual else [])
        for name in needed:
            if files[name] is None:
                raise ValueError(f"{name}: TLS{' with client certificates' if self.grpc_use_ssl_mutual else ''} needs this PEM file")
        for name, path in files.items():
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: {str(path)!r} is not a file; expected a PEM file")

    @property
    def tls(self) -> bool:
        return self.grpc_use_ssl or self.grpc_use_ssl_mutual

    def tls_args(self) -> List[str]:
        """tritonserver's TLS and header-forwarding flags for these settings."""
        args = []
        if self.tls:
            cert, key = self.grpc_server_cert, self.grpc_server_key
            if cert is None or key is None:  # __post_init__ refuses TLS without both
                raise ValueError("grpc_use_ssl needs grpc_server_cert and grpc_server_key")
            args.append("--grpc-use-ssl-mutual=true" if self.grpc_use_ssl_mutual else "--grpc-use-ssl=true")
            args += [f"--grpc-server-cert={Path(cert).resolve()}", f"--grpc-server-key={Path(key).resolve()}"]
            if self.grpc_root_cert is not None:
                args.append(f"--grpc-root-cert={Path(self.grpc_root_cert).resolve()}")
        if self.grpc_header_forward_pattern is not None:
            args.append(f"--grpc-header-forward-pattern={self.grpc_header_forward_pattern}")
        return args

    @classmethod
    def on_free_ports(cls, repository: Path, **settings) -> "ServerConfig":
        """A loopback server of ``repository`` on three free ports (tests, demo, benchmarks); other settings as given."""
        return cls(repository=repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), **settings)

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


def default_cache_dir() -> Path:
    return Path(os.environ.get("SAM_TRITON_CACHE", Path.home() / ".cache" / "sam-triton"))


def default_repository(cache_dir: Optional[Path] = None) -> Path:
    """The model repository build, demo, serve, perf and soak use without --repository: in the cache
    directory, beside the exports, never in the checkout (whose model_repository/ is the checked-in layout)."""
    return Path(cache_dir or default_cache_dir()) / "model_repository"


def model_names(repository: Path) -> List[str]:
    """The models of a repository: directories holding a config.pbtxt."""
    return sorted(p.parent.name for p in Path(repository).glob("*/config.pbtxt"))


#: What the embedded tritonserver runs (runtime_of a config): the python backend and ensembles.
EMBEDDED_RUNS = ("python", "ensemble")


def models_the_embedded_server_cannot_run(repository: Path) -> Dict[str, str]:
    """Model name -> its backend or platform, for the models outside the embedded server's python backend."""
    runtimes = {model: runtime_of(config) for model, config in read_configs(repository).items()}
    return {model: runtime for model, runtime in runtimes.items() if runtime and runtime not in EMBEDDED_RUNS}


class TritonServer:
    """A tritonserver process: ``start()`` waits until every model is READY, ``stop()`` drains it.

    Usable as a context manager. The server's log goes to ``log_path``; errors quote its tail.
    """

    def __init__(self, config: ServerConfig, *, log_path: Optional[Path] = None, cache_dir: Optional[Path] = None) -> None:
        self.config = config
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.log_path = Path(log_path) if log_path else self.cache_dir / "logs" / f"tritonserver-{config.grpc_port}.log"
        self.process: Optional[subprocess.Popen] = None
        self.api_key = config.api_key or server_key()

    # -- command line -----------------------------------------------------------------------
    def command(self) -> List[str]:
        cfg = self.config
        binary = cfg.tritonserver or embedded_tritonserver()
        args = [
            str(binary),
            f"--model-repository={Path(cfg.repository).resolve()}",
            f"--grpc-address={cfg.host}",
            f"--grpc-port={cfg.grpc_port}",
            f"--http-address={cfg.host}",
            f"--http-port={cfg.http_port}",
            f"--metrics-address={cfg.host}",
            f"--metrics-port={cfg.metrics_port}",
            "--allow-gpu-metrics=false",
            "--model-control-mode=none",
            "--exit-on-error=true",
            "--strict-readiness=true",
            f"--exit-timeout-secs={cfg.exit_timeout_s}",
            f"--log-verbose={cfg.log_verbose}",
            *restriction_args(key=self.api_key, apis=cfg.restricted_apis),
            *cfg.tls_args(),
        ]
        backend_dir = cfg.backend_directory
        if backend_dir is None and cfg.tritonserver is None:
            backend_dir = prepare_python_backend(self.cache_dir / "backends")
        if backend_dir is not None:
            args.append(f"--backend-directory={backend_dir}")
        return args + list(cfg.extra_args)

    def environment(self) -> dict:
        env = dict(os.environ)
        for name, value in MALLOC_DEFAULTS.items():
            env.setdefault(name, value)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        if self.config.tritonserver is None:
            libs = [str(embedded_library_path())] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
            env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        return env

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, *, timeout_s: float = 180.0) -> "TritonServer":
        """Launch tritonserver and block until the server and every model in the repository are READY."""
        models = model_names(self.config.repository)
        if not models:
            missing = "" if Path(self.config.repository).is_dir() else ": it does not exist; write it with `sam-triton build`"
            raise ServerStartError(f"{self.config.repository} holds no model (no */config.pbtxt){missing}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self.command()
        log.info("starting %s", " ".join(command).replace(self.api_key, "<key>"))
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, env=self.environment(), start_new_session=True
            )
        try:
            if self.config.restricted_apis:
                write_key_file(self.config.grpc_port, self.api_key)
            self._wait_ready(models, timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("tritonserver ready: gRPC %s, HTTP %s", self.config.grpc_url, self.config.http_url)
        return self

    def _wait_ready(self, models: Sequence[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = ["/v2/health/ready"] + [f"/v2/models/{m}/ready" for m in models]
        while pending:
            if self.process is not None and self.process.poll() is not None:
                failures = self.load_failures()
                reason = "\n".join(f"  model '{m}' failed to load: {why}" for m, why in failures) or self.log_tail()
                raise ServerStartError(
                    f"tritonserver exited with status {self.process.returncode} before it was ready:\n{reason}\n"
                    f"(full server log: {self.log_path})"
                )
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"tritonserver was not ready within {timeout_s:.0f} s (waiting for {pending[0]}):\n{self.log_tail()}"
                )
            if self._http_ok(pending[0]):
                pending.pop(0)
            else:
                time.sleep(0.2)

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.config.http_url + path, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def is_ready(self) -> bool:
        return self.running and self._http_ok("/v2/health/ready")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> Optional[int]:
        """SIGTERM (Triton drains in-flight requests for up to exit_timeout_s), then SIGKILL once Triton
        says its exit timeout expired (it may then hang on a busy python stub) or STOP_GRACE_S later;
        returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.config.exit_timeout_s + STOP_GRACE_S
            while self.process.poll() is None:
                if time.monotonic() > deadline or EXIT_TIMEOUT_EXPIRED in self.log_tail(600):
                    log.warning("tritonserver did not finish within its exit timeout; killing it and its python stubs")
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
                time.sleep(0.1)
        remove_key_file(self.config.grpc_port, self.api_key)
        return self.process.returncode

    def wait(self) -> int:
        """Block until the server exits on its own; returns its exit status."""
        if self.process is None:
            raise RuntimeError("tritonserver was not started")
        return self.process.wait()

    def load_failures(self) -> List[Tuple[str, str]]:
        """(model, Triton's reason) for each model the log says failed to load."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        failures = []
        for model, reason in LOAD_FAILURE.findall(text):
            reason = reason.split("\\n\\nAt:")[0].replace("\\n", " ").strip()
            if (model, reason) not in failures:
                failures.append((model, reason))
        return failures

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """About the last ``chars`` characters of the server's log (read from its end)."""
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(max(0, self.log_path.stat().st_size - 4 * chars))
                text = log_file.read().decode(errors="replace")
        except OSError:
            return "(no server log)"
        return text[-chars:]

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
