"""A helper's configuration file (TOML), read and checked once at start-up.

```toml
[helper]
index = 1                      # 1, 2 or 3; H1 is the leader
listen = "127.0.0.1:7001"      # Query and health services, for report collectors (TLS)
peer_listen = "127.0.0.1:7101" # Peer service, for the two other helpers (mutual TLS)
data_dir = "data/helper1"
allow_unnoised = false         # true only on test networks: honour --no-noise
allow_semi_honest = false      # true: also run semi-honest queries (default: malicious-secure only)
epoch_budget = 10.0            # ε each site may spend per epoch, at the network's δ
delta = 1e-9                   # the network's δ: every noised query and every epoch is (ε, δ)-DP
retention_seconds = 3600       # how long an ended query's status and result stay available
timeout_seconds = 120          # deadline of every peer call and MPC message
max_upload_bytes = 2147483648  # a larger upload is refused (at its header, before it is stored)
max_rows = 16777216            # most reports in one query
max_query_memory_bytes = 34359738368  # estimated working memory of one query (ipa_helper.limits)
max_breakdowns = 65536         # most breakdowns: a result share (16 B each) must fit one message
max_queries = 8                # queries not ended yet (awaiting upload or running)
upload_idle_seconds = 30       # an upload silent this long between chunks fails its query
upload_total_seconds = 3600    # an upload still streaming after this long fails its query
max_uploads = 8                # uploads streaming at once; more are refused (RESOURCE_EXHAUSTED)
retry_seconds = 2              # how often an undecided query asks its peers for the decision

[tls]
cert = "helper1.pem"
key = "helper1.key"
collector_ca = "ca.pem"        # the CA of the report collectors' client certificates

[hpke]
keys = "helper1.hpke.toml"     # the helper's HPKE key registry

[[peers]]
index = 2
address = "127.0.0.1:7102"     # the peer's peer_listen
cert = "helper2.pem"

[[collectors]]                 # every report collector this helper serves
name = "default"
sites = ["*"]                  # the sites that authorised it ("*": every site)
fingerprint = "3f1a…"          # SHA-256 of its client certificate (hex)

[cluster]                      # optional: a coordinator plus Ray workers (ipa_helper.cluster)
workers = 1                    # 1: this process alone (Ray not used); W > 1: W Ray worker actors
address = ""                   # "": a local Ray cluster of this helper's own; else an existing one's
object_store_bytes = 2147483648  # the local cluster's shared object store
```

Relative paths are relative to the file's directory. The ``[tls]`` section
may be absent only when the helper runs with ``--insecure`` (then a
collector's ``fingerprint`` may be absent too). See ``ipa_helper.collectors``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipa.errors import ConfigError
from ipa_helper.collectors import CollectorConfig
from ipa_helper.limits import largest_max_breakdowns

__all__ = ["ClusterConfig", "HelperConfig", "PeerConfig", "load_config"]


@dataclass(frozen=True)
class PeerConfig:
    index: int
    address: str
    cert: Path | None


@dataclass(frozen=True)
class ClusterConfig:
    """``[cluster]``: how many Ray worker actors this helper spreads a query over, and where."""

    workers: int = 1
    address: str = ""
    object_store_bytes: int = 2 << 30


@dataclass(frozen=True)
class HelperConfig:
    index: int
    listen: str
    peer_listen: str
    data_dir: Path
    hpke_keys: Path
    peers: tuple[PeerConfig, PeerConfig]
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_unnoised: bool = False
    allow_semi_honest: bool = False
    timeout_seconds: float = 120.0
    max_upload_bytes: int = 2 << 30
    epoch_budget: float = 10.0
    retention_seconds: float = 3600.0
    max_rows: int = 1 << 24
    max_query_memory_bytes: int = 32 << 30
    max_breakdowns: int = 1 << 16
    max_queries: int = 8
    delta: float = 1e-9
    collector_ca: Path | None = None
    collectors: tuple[CollectorConfig, ...] = ()
    upload_idle_seconds: float = 30.0
    upload_total_seconds: float = 3600.0
    max_uploads: int = 8
    retry_seconds: float = 2.0
    cluster: ClusterConfig = ClusterConfig()

    @property
    def party(self) -> int:
        """The 0-based party index used by the MPC code."""
        return self.index - 1

    @property
    def secure(self) -> bool:
        return self.tls_cert is not None


def _get(table: dict[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing {key}")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} must be a {kind.__name__}, got {value!r}")
    return value


def load_config(path: str | Path) -> HelperConfig:
    """Read and check a helper config; ConfigError names the file and the bad key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read helper config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base = path.parent
    helper = _get(raw, "helper", dict, str(path))
    where = f"{path} [helper]"
    index = _get(helper, "index", int, where)
    if index not in (1, 2, 3):
        raise ConfigError(f"{where}: index must be 1, 2 or 3, got {index}")
    tls = raw.get("tls")
    peers = tuple(
        _peer(p, base, f"{path} [[peers]]", tls is not None) for p in _get(raw, "peers", list, str(path))
    )
    if sorted(p.index for p in peers) != sorted({1, 2, 3} - {index}):
        raise ConfigError(f"{path}: [[peers]] must list exactly the two other helpers")
    hpke = _get(raw, "hpke", dict, str(path))
    delta = _get(helper, "delta", float, where, 1e-9)
    if not 0 < delta < 1:
        raise ConfigError(f"{where}: delta must be in (0, 1), got {delta!r}")
    collectors = tuple(
        _collector(c, f"{path} [[collectors]]", tls is not None) for c in raw.get("collectors", [])
    )
    if len({c.name for c in collectors}) != len(collectors):
        raise ConfigError(f"{path}: [[collectors]] names must be distinct")
    return HelperConfig(
        index=index,
        listen=_get(helper, "listen", str, where),
        peer_listen=_get(helper, "peer_listen", str, where),
        data_dir=base / _get(helper, "data_dir", str, where),
        hpke_keys=base / _get(hpke, "keys", str, f"{path} [hpke]"),
        peers=tuple(sorted(peers, key=lambda p: p.index)),  # type: ignore[arg-type]
        tls_cert=base / _get(tls, "cert", str, f"{path} [tls]") if tls else None,
        tls_key=base / _get(tls, "key", str, f"{path} [tls]") if tls else None,
        allow_unnoised=_get(helper, "allow_unnoised", bool, where, False),
        allow_semi_honest=_get(helper, "allow_semi_honest", bool, where, False),
        timeout_seconds=_get(helper, "timeout_seconds", float, where, 120.0),
        epoch_budget=_get(helper, "epoch_budget", float, where, 10.0),
        retention_seconds=_get(helper, "retention_seconds", float, where, 3600.0),
        delta=delta,
        collector_ca=base / _get(tls, "collector_ca", str, f"{path} [tls]") if tls else None,
        collectors=collectors,
        **_limits(helper, where),
        upload_idle_seconds=_get(helper, "upload_idle_seconds", float, where, 30.0),
        upload_total_seconds=_get(helper, "upload_total_seconds", float, where, 3600.0),
        max_uploads=_get(helper, "max_uploads", int, where, 8),
        retry_seconds=_get(helper, "retry_seconds", float, where, 2.0),
        cluster=_cluster(_get(raw, "cluster", dict, str(path), {}), f"{path} [cluster]"),
    )


def _cluster(table: dict[str, Any], where: str) -> ClusterConfig:
    workers = _get(table, "workers", int, where, 1)
    if not 1 <= workers <= 1024:
        raise ConfigError(f"{where}: workers must be in [1, 1024], got {workers}")
    store = _get(table, "object_store_bytes", int, where, ClusterConfig.object_store_bytes)
    if store < 80 << 20:
        raise ConfigError(f"{where}: object_store_bytes must be at least 83886080 (80 MiB), got {store}")
    unknown = set(table) - set(ClusterConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]}")
    return ClusterConfig(workers, _get(table, "address", str, where, "").strip(), store)


def _limits(helper: dict[str, Any], where: str) -> dict[str, int]:
    """The resource limits (``ipa_helper.limits``): positive integers, results that fit a message."""
    defaults = HelperConfig.__dataclass_fields__
    limits = {}
    for key in ("max_upload_bytes", "max_rows", "max_query_memory_bytes", "max_breakdowns", "max_queries"):
        limits[key] = _get(helper, key, int, where, defaults[key].default)
        if limits[key] < 1:
            raise ConfigError(f"{where}: {key} must be a positive integer, got {limits[key]}")
    if limits["max_breakdowns"] > largest_max_breakdowns():
        raise ConfigError(
            f"{where}: max_breakdowns must be at most {largest_max_breakdowns()}: "
            "a larger result share does not fit one gRPC message"
        )
    return limits


def _collector(table: Any, where: str, tls: bool) -> CollectorConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: each collector must be a table")
    name = _get(table, "name", str, where)
    sites = _get(table, "sites", list, f"{where} {name!r}")
    if not sites or not all(isinstance(s, str) and s for s in sites):
        raise ConfigError(f'{where} {name!r}: sites must be a non-empty list of site names (or "*")')
    fingerprint = _get(table, "fingerprint", str, f"{where} {name!r}") if tls else table.get("fingerprint")
    return CollectorConfig(name, tuple(sites), fingerprint if isinstance(fingerprint, str) else None)


def _peer(table: Any, base: Path, where: str, tls: bool) -> PeerConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: each peer must be a table")
    cert = _get(table, "cert", str, where) if tls else table.get("cert")
    return PeerConfig(
        index=_get(table, "index", int, where),
        address=_get(table, "address", str, where),
        cert=base / cert if isinstance(cert, str) else None,
    )
