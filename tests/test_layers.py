"""Import direction: each module imports only from its own layer or the layers below it.

The layers of the core ``ipa`` package, lowest first, as the code has them
(``STYLE.md``: sharing → prss → basic protocols → comparison → shuffle/sort →
attribution → dp; servers and the client are thin adapters on top). A new
module must be added to one of them; putting it in a layer is the review of
its imports. Every ``import`` statement counts, also inside functions and
under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"ipa": "src", "ipa_rpc": "src", "ipa_helper": "helpers", "ipa_client": "client"}

LAYERS = [
    ("errors and argument checks",    "ipa ipa.errors ipa._checks"),
    ("words and shares",              "ipa.mpc ipa.mpc.ring ipa.mpc.replicated ipa.mpc.sharing"),
    # buckets (the bound's arithmetic, nothing of ipa) sits here: the verifier plans each batch with it
    ("steps, channel, randomness, context", "ipa.mpc.step ipa.mpc.channel ipa.mpc.prss ipa.mpc.buckets "
                                      "ipa.mpc.collective ipa.mpc.verifier ipa.mpc.context ipa.mpc.memory"),
    ("basic protocols",               "ipa.mpc.verify ipa.mpc.multiply ipa.mpc.mac ipa.mpc.reveal "
                                      "ipa.mpc.input ipa.mpc.checkpoint ipa.mpc.halo"),
    ("boolean circuits, conversions", "ipa.mpc.adder ipa.mpc.compare ipa.mpc.convert ipa.mpc.one_hot"),
    ("shuffle and sort",              "ipa.mpc.tags ipa.mpc.shuffle ipa.mpc.permute ipa.mpc.sort"),
    ("the three-party test world",    "ipa.mpc.testing"),
    ("events in the clear",           "ipa.events ipa.synthetic"),
    ("crypto and keys",               "ipa.crypto.hpke ipa.crypto.binding ipa.crypto.keys ipa.crypto.opener "
                                      "ipa.crypto ipa.certs ipa.epochs ipa.network"),
    ("query configuration and rows",  "ipa.attribution ipa.attribution.config ipa.attribution.rows"),
    ("attribution phases",            "ipa.attribution.sites ipa.attribution.boundaries "
                                      "ipa.attribution.last_touch ipa.attribution.cap "
                                      "ipa.attribution.aggregate"),
    ("attribution pipeline",          "ipa.attribution.pipeline"),
    ("reference in the clear",        "ipa.reference"),
    ("differential privacy",          "ipa.dp.sampler ipa.dp.calibration ipa.dp.accounting ipa.dp.noise "
                                      "ipa.dp ipa.dp.release"),
    ("report formats",                "ipa.reports ipa.reports.layout ipa.reports.match_key "
                                      "ipa.reports.batch ipa.reports.decode"),
    ("a query's parameters and digest", "ipa.query"),
]  # fmt: skip
"""The core's layers, lowest first: a module may import from its own layer and from those above it here."""

NEVER = {
    "ipa": {"grpc", "google.protobuf", "ipa_rpc", "ipa_helper", "ipa_client", "ray"},
    "ipa_rpc": {"ipa", "ipa_helper", "ipa_client"},
    "ipa_helper": {"ipa_client"},
    "ipa_client": {"ipa_helper", "ray"},
}
"""What each top-level package never imports: the core no network code or adapters (nor Ray, which
only a helper's coordinator uses); the wire contract nothing of ours; the helper and the client
nothing of each other."""


def modules(package: str) -> dict[str, Path]:
    """Every module of a top-level package by dotted name (a package by its own name)."""
    base = ROOT / SOURCES[package]
    found = {}
    for path in sorted((base / package).rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """The dotted names ``name`` imports (``from a.b import c`` gives ``a.b.c`` if that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


LAYER_OF = {module: index for index, (_, members) in enumerate(LAYERS) for module in members.split()}
CORE = modules("ipa")


def test_every_core_module_is_in_one_layer():
    listed = [module for _, members in LAYERS for module in members.split()]
    assert len(listed) == len(set(listed)), "a module is listed in two layers"
    missing = sorted(set(CORE) - set(listed))
    assert not missing, f"add these modules to a layer of LAYERS in {Path(__file__).name}: {missing}"
    gone = sorted(set(listed) - set(CORE))
    assert not gone, f"LAYERS lists modules that do not exist: {gone}"


@pytest.mark.parametrize("name", sorted(CORE))
def test_core_module_imports_only_its_layer_and_below(name):
    layer = LAYER_OF.get(name)
    if layer is None:
        pytest.skip("not in a layer (test_every_core_module_is_in_one_layer fails)")
    upward = sorted(
        f"{target} ({LAYERS[LAYER_OF[target]][0]})"
        for target in imports(name, CORE[name])
        if LAYER_OF.get(target, -1) > layer
    )
    assert not upward, f"{name} ({LAYERS[layer][0]}) imports from a higher layer: {upward}"


@pytest.mark.parametrize("package", sorted(NEVER))
def test_top_level_packages_never_import_what_they_must_not(package):
    found = modules(package)
    assert found, f"no modules found for {package}"
    bad = sorted(
        f"{name} imports {target}"
        for name, path in found.items()
        for target in imports(name, path)
        if any(within(target, banned) for banned in NEVER[package])
    )
    assert not bad, bad


def test_the_checks_see_a_violation(tmp_path):
    """The parser finds imports in functions, relative ones and ``from x import module``."""
    path = tmp_path / "sort.py"
    path.write_text(
        "def f():\n    from ipa.attribution import pipeline\n    from . import compare\n    import grpc\n"
    )
    found = imports("ipa.mpc.sort", path)
    assert {"ipa.attribution.pipeline", "ipa.mpc.compare", "grpc"} <= found
    assert LAYER_OF["ipa.attribution.pipeline"] > LAYER_OF["ipa.mpc.sort"]
