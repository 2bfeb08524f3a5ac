"""pytest entry point of the Ollama conformance suite (`pytest11: ollama_conformance`). Deliberately tiny.

Every pytest run of the environment loads this module, so it does nothing unless the suite itself is on the
command line (`pytest --pyargs ollama_conformance.conformance`, the suite's folder or one of its modules): only
then are the suite's options (all `--ollama-*`), markers and session added, from `conformance/session.py`. An
unrelated pytest run sees no option, no marker and no import of the harness.

Run the suite with `ollama-conformance check` or
`pytest --pyargs ollama_conformance.conformance.suite [--ollama-target URL] [--ollama-model M] ...`.
The suite (`conformance/suite/`): `conftest.py` (fixtures `target`, `client`, `api`, `chat_model`,
`embed_model`; surface, capability and precondition checks), one `test_<area>.py` per area; every test carries
`@pytest.mark.feature("<id from spec/features.yaml>")`, whose level and surface come from the catalogue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SUITE_DIR = Path(__file__).resolve().parent / "suite"
PACKAGE = "ollama_conformance.conformance"
_ACTIVE = "_ollama_conformance_active"


def suite_requested(args: list[str], invocation_dir: Path, *, pyargs: bool = False) -> bool:
    """True when the command line names the suite: its folder (or a parent), a module of it, or the package."""
    pyargs = pyargs or "--pyargs" in args
    for arg in args:
        base = str(arg).split("::", 1)[0]
        if base.startswith("-"):
            continue
        if pyargs and (base == PACKAGE or base.startswith(PACKAGE + ".suite")):
            return True
        path = (invocation_dir / base).resolve()
        if path == SUITE_DIR or SUITE_DIR in path.parents or path in SUITE_DIR.parents:
            return True
    return False


def pytest_load_initial_conftests(early_config: Any, parser: Any, args: list[str]) -> None:
    """Called before the command line is parsed for good: add the suite's options only when the suite runs."""
    options = vars(early_config.option)
    # An xdist worker gets the controller's parsed options (ours among them) and positional args.
    worker = "ollama_timeout" in options
    if worker or suite_requested(list(args), Path(early_config.invocation_params.dir), pyargs=bool(options.get("pyargs"))):
        from ollama_conformance.conformance.session import add_options

        add_options(parser)
        setattr(early_config, _ACTIVE, True)


def pytest_configure(config: Any) -> None:
    if not getattr(config, _ACTIVE, False):
        return
    from ollama_conformance.conformance.session import ConformanceSession, add_markers

    add_markers(config)
    config.pluginmanager.register(ConformanceSession(config), "ollama-conformance-session")
