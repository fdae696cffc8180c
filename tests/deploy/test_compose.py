"""README's Docker section against a real Docker engine.

In a copy of the repository (so a ``network/`` of the developer's is never
touched): ``ipa keygen --out network --compose --host localhost
--allow-unnoised --base-port P``, then ``docker compose up --build`` (detached,
``--wait`` until the three health checks pass). Then, from this machine as a
collector: an unnoised query equal to ``ipa reference``, a noised one whose
spend every helper's ledger shows, one helper killed and started again with
the budget intact and the next query still exact, the logs, and
``docker compose down``.

When run as root, keygen runs as an unprivileged uid of its own, as a person
would: the containers must then run as that uid to read its 0600 keys.
``docker_engine`` installs and starts what is missing (and stops a dockerd it
started). Runs are serialised by a lock file, since every run shares the
engine and the ``ipa-helper`` image. Marked ``docker``: ``pytest -m docker``
runs this alone, and a machine where Docker cannot run fails here, loudly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker_engine
import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path(tempfile.gettempdir()) / "ipa-deploy-test.lock"
KEY_OWNER = 54321  # an unprivileged uid:gid that is neither root nor the image's default 1000
QUERY = ["--breakdowns", "12", "--cap", "60", "--window", "86400"]


@dataclass
class Deployment:
    project: Path
    network: Path
    events: Path
    owner: tuple[int, int]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run("docker", "compose", *args, cwd=self.project, timeout=timeout)

    def ipa(self, *args: str) -> dict:
        done = _run(sys.executable, "-m", "ipa_client.cli", *args, cwd=self.project, timeout=300)
        return json.loads(done.stdout)

    @property
    def identity(self) -> list[str]:
        """The report collector keygen made (``default``, for every site)."""
        return ["--identity", str(self.network / "collectors" / "default.toml")]

    def query(self, *args: str, epoch: int) -> dict:
        network = ["--network", str(self.network / "network.toml"), "--site", "shop.example", *self.identity]
        return self.ipa("query", *network, "--input", str(self.events), *QUERY, "--epoch", str(epoch), *args)

    def budget(self, epoch: int) -> dict:
        network = ["--network", str(self.network / "network.toml"), "--site", "shop.example", *self.identity]
        return self.ipa("budget", *network, "--epoch", str(epoch))

    def services(self) -> dict[str, dict]:
        listed = self.compose("ps", "--all", "--format", "json").stdout
        rows = [json.loads(line) for line in listed.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    def wait_for(self, service: str, key: str, value: str, seconds: float = 90) -> None:
        """Poll ``docker compose ps`` until ``service``'s ``key`` (State, Health) is ``value``."""
        deadline = time.monotonic() + seconds
        while self.services()[service].get(key) != value:
            if time.monotonic() > deadline:
                logs = self.compose("logs", "--no-color", service).stdout[-3000:]
                pytest.fail(
                    f"{service}: {key} not {value} after {seconds:.0f} s: {self.services()[service]}\n{logs}"
                )
            time.sleep(0.5)


def _run(*args: str, cwd: Path | None = None, timeout: float = 300, check: bool = True, stdin: str = ""):
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and done.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    return done


def _timed(step: str, started: float) -> None:
    print(f"[deploy] {step}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_base_port() -> int:
    """P such that P..P+5 are free here (keygen's six ports; compose publishes P, P+2, P+4)."""
    for base in range(23100 + os.getpid() % 400 * 10, 60000, 10):
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + 6):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return base
    raise RuntimeError("no six free ports")


def _copy_project(to: Path) -> None:
    """The repository's files as a clone has them (tracked and not ignored), without tests/."""
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if name.startswith("tests/") or not source.is_file():
            continue
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, to / name)


def _as_key_owner() -> tuple[list[str], tuple[int, int]]:
    """Run keygen as an unprivileged uid when root and it can run this Python; else as ourselves."""
    if os.geteuid() == 0 and shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={KEY_OWNER}", f"--regid={KEY_OWNER}", "--clear-groups"]
        if (
            subprocess.run(
                [*prefix, sys.executable, "-c", "import ipa_client"], capture_output=True
            ).returncode
            == 0
        ):
            return prefix, (KEY_OWNER, KEY_OWNER)
    return [], (os.getuid(), os.getgid())


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with _exclusive(), contextlib.ExitStack() as cleanup:
        started = time.monotonic()
        try:
            engine = docker_engine.start_engine()
            cleanup.callback(engine.stop)
            docker_engine.ensure_compose()
            docker_engine.ensure_base_image()
        except docker_engine.EngineError as exc:
            pytest.fail(f"no Docker engine for the deployment test: {exc}")
        _timed("engine, compose, base image", started)

        project = Path(tempfile.mkdtemp(prefix="ipa-deploy-"))
        cleanup.callback(shutil.rmtree, project, ignore_errors=True)
        project.chmod(0o755)
        _copy_project(project)
        prefix, owner = _as_key_owner()
        os.chown(project, *owner)  # keygen makes ./network as the key owner, like a person in their clone
        keygen = ["keygen", "--out", "network", "--compose", "--host", "localhost", "--allow-unnoised"]
        base = str(_free_base_port())
        _run(*prefix, sys.executable, "-m", "ipa_client.cli", *keygen, "--base-port", base, cwd=project)

        deployment = Deployment(project, project / "network", project / "events.csv", owner)
        deployment.ipa(
            "gen-events", "--events", "1500", "--seed", "15", "--single-site", "--out", str(deployment.events)
        )
        cleanup.callback(_down, deployment)
        started = time.monotonic()
        deployment.compose("up", "--build", "--detach", "--wait", "--wait-timeout", "180", timeout=1200)
        _timed("docker compose up --build --wait", started)
        yield deployment


def _down(deployment: Deployment) -> None:
    deployment.compose("down", "--remove-orphans", "--timeout", "10")
    # the image builds of earlier runs, now untagged (the current ipa-helper and the build cache stay)
    _run("docker", "image", "prune", "--force", "--filter", "label=org.opencontainers.image.title=ipa-helper")
    left = _run(
        "docker",
        "ps",
        "--all",
        "--quiet",
        "--filter",
        f"label=com.docker.compose.project={deployment.project.name}",
    )
    networks = _run("docker", "network", "ls", "--quiet", "--filter", f"name={deployment.project.name}")
    assert not left.stdout.strip() and not networks.stdout.strip(), (
        "docker compose down left containers or networks"
    )


def test_three_healthy_helpers_run_as_the_owner_of_the_keys(deployment):
    services = deployment.services()
    assert sorted(services) == ["helper1", "helper2", "helper3"]
    uid, gid = deployment.owner
    for name, row in services.items():
        assert row["State"] == "running" and row["Health"] == "healthy", row
        user = _run("docker", "inspect", "--format", "{{.Config.User}}", row["Name"]).stdout.strip()
        assert user == f"{uid}:{gid}", name
    for key in [*deployment.network.glob("*.key"), *deployment.network.glob("*.hpke.toml")]:
        info = key.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and (info.st_uid, info.st_gid) == (uid, gid), key
    for i in (1, 2, 3):  # each helper made its ledger as the key owner
        assert (deployment.network / "data" / f"helper{i}" / "budget.sqlite").stat().st_uid == uid


def test_an_unnoised_query_equals_the_reference(deployment):
    released = deployment.query("--no-noise", epoch=1)
    reference = deployment.ipa("reference", "--input", str(deployment.events), *QUERY)
    assert released["sums"] == reference["sums"] and len(released["sums"]) == 12


def test_a_noised_query_spends_the_budget_on_every_helper(deployment):
    released = deployment.query("--epsilon", "1", epoch=2)
    assert len(released["sums"]) == 12
    budget = deployment.budget(epoch=2)
    assert budget["spent_by_helper"] == pytest.approx([1.0, 1.0, 1.0])  # the ε its ρ is worth
    assert [q["query_id"] for q in budget["queries"]] == [released["query_id"]]


def test_a_killed_helper_comes_back_with_its_budget_and_serves(deployment):
    deployment.query("--epsilon", "0.5", epoch=3)
    before = deployment.budget(epoch=3)
    deployment.compose("kill", "--signal", "SIGKILL", "helper2")
    deployment.wait_for("helper2", "State", "exited")
    deployment.compose("start", "helper2")
    deployment.wait_for("helper2", "Health", "healthy")
    after = deployment.budget(epoch=3)
    assert after["spent_by_helper"] == before["spent_by_helper"] == pytest.approx([0.5, 0.5, 0.5])
    assert after["queries"] == before["queries"]
    released = deployment.query("--no-noise", epoch=3)
    assert released["sums"] == deployment.ipa("reference", "--input", str(deployment.events), *QUERY)["sums"]


def test_the_logs_are_json_lines_of_lifecycle_events(deployment):
    released = deployment.query("--no-noise", epoch=4)
    for service in ("helper1", "helper2", "helper3"):
        lines = deployment.compose("logs", "--no-color", "--no-log-prefix", service).stdout.splitlines()
        events = [json.loads(line) for line in lines if line.strip()]
        assert {e["helper"] for e in events} == {int(service[-1])}
        assert "listening" in {e["event"] for e in events}
        done = [e for e in events if e["event"] == "query_completed"]
        assert released["query_id"] in {e["query_id"] for e in done}


def test_the_build_context_holds_the_sources_and_no_keys_or_caches(deployment):
    for decoy in (".venv/pyvenv.cfg", ".benchmarks/run.json", "src/stray.key", "client/stray.hpke.toml"):
        (deployment.project / decoy).parent.mkdir(exist_ok=True)
        (deployment.project / decoy).write_text("decoy")
    dockerfile = f"FROM {docker_engine.base_image_tag()}\nCOPY . /context\n"
    image = _run("docker", "build", "--quiet", "--file", "-", ".", cwd=deployment.project, stdin=dockerfile)
    image_id = image.stdout.strip().splitlines()[-1]
    try:
        listed = _run("docker", "run", "--rm", "--entrypoint", "find", image_id, "/context", "-type", "f")
    finally:
        _run("docker", "rmi", "--force", image_id)
    files = [Path(line).relative_to("/context") for line in listed.stdout.split()]
    assert (deployment.network / "helper1.key").exists() and Path("src/ipa/__init__.py") in files
    tops = {f.parts[0] for f in files}
    assert tops == {"pyproject.toml", "README.md", "src", "helpers", "client"}, tops
    assert not [f for f in files if f.suffix == ".key" or f.name.endswith(".hpke.toml")]
