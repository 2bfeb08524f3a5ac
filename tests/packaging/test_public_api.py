"""Each package states its public API (`__all__`), every name in it resolves, and importing a package is cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["ollama_conformance", "ollama_conformance.spec", "ollama_conformance.conformance", "ollama_conformance.load",
            "ollama_conformance.reports", "ollama_conformance.reference_backend", "ollama_conformance.fixtures"]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    assert isinstance(package.__all__, list | tuple)
    for public in package.__all__:
        assert getattr(package, public) is not None, f"{name}.{public}"
    with pytest.raises(AttributeError):
        _ = package.no_such_name_here


def test_importing_the_plugin_package_imports_nothing_heavy() -> None:
    """The pytest entry point imports the conformance package in every pytest run of the environment."""
    probe = ("import sys, ollama_conformance.conformance.plugin; "
             "print(sorted(m for m in ('torch', 'httpx', 'jsonschema', 'locust', 'numpy', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
