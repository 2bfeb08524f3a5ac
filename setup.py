"""Packaging: the repository keeps its top-level folders; installed, each is a subpackage of `ollama_conformance`.

Everything else (metadata, dependencies, entry points) is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

PARTS = ("spec", "conformance", "load", "reference_backend", "reports", "fixtures")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = ["ollama_conformance"]
    package_dir = {"ollama_conformance": "ollama_conformance"}
    for part in PARTS:
        name = f"ollama_conformance.{part}"
        package_dir[name] = part
        # namespace packages too: data folders without __init__.py (templates, corpora) ship as package data
        found = find_namespace_packages(part, exclude=["*__pycache__*"])
        packages += [name, *(f"{name}.{sub}" for sub in found)]
    return packages, package_dir


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir)
