"""Every command-line tool's ``--help`` shows each option's default: walks every CLI module of ``verl_ext`` (found by
its ``__main__`` block and argparse, so a new or moved CLI is included) and every ``data_prep/`` script, captures the
parser its entry point builds (as ``python -m MODULE --help`` would, without running anything) and checks the help
text of each option whose default is not None. Flags without a value (``store_true``) and empty defaults are left
out: their default is the flag's absence. ``verl_ext.eval.rexrank*`` has its own test (tests/eval/test_rexrank.py)."""
from __future__ import annotations

import argparse
import pkgutil
import runpy
import sys
import warnings
from pathlib import Path

import pytest

import verl_ext

REPO = Path(__file__).resolve().parents[1]
OWN_TESTS = ("verl_ext.eval.rexrank",)


def _cli_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(verl_ext.__path__, "verl_ext."):
        spec = info.module_finder.find_spec(info.name)
        if info.ispkg or spec is None or not spec.origin or info.name.startswith(OWN_TESTS):
            continue
        text = Path(spec.origin).read_text()
        if '__name__ == "__main__"' in text and "argparse" in text:
            names.append(info.name)
    return sorted(names)


CLIS = [("module", name) for name in _cli_modules()] + [
    ("script", str(p.relative_to(REPO))) for p in sorted((REPO / "data_prep").glob("*.py"))]


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def _capture(kind: str, target: str, monkeypatch) -> argparse.ArgumentParser:
    def stop(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", stop)
    monkeypatch.setattr(sys, "argv", [target])
    with warnings.catch_warnings(), pytest.raises(_Captured) as info:
        warnings.simplefilter("ignore")  # runpy: "found in sys.modules ... prior to execution"
        if kind == "module":
            runpy.run_module(target, run_name="__main__", alter_sys=False)
        else:
            runpy.run_path(str(REPO / target), run_name="__main__")
    return info.value.parser


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _without_default(parser: argparse.ArgumentParser) -> list[str]:
    """Options whose help text does not show their (non-None, non-empty) default."""
    missing = []
    for action in parser._actions:
        default = action.default
        if (not action.option_strings or action.nargs == 0 or default is None or default is argparse.SUPPRESS
                or default in ([], {}, (), "")):
            continue
        text = parser._get_formatter()._expand_help(action) if action.help else ""
        shown = str(default) if not isinstance(default, (list, tuple)) else " ".join(map(str, default))
        if "default" not in text or shown not in text:
            missing.append(f"{'/'.join(action.option_strings)} (default {default!r}): {text!r}")
    return missing


def test_every_cli_is_found():
    names = {target for _, target in CLIS}
    for expected in ("verl_ext.eval.evaluate", "verl_ext.eval.compare", "verl_ext.eval.generate",
                     "verl_ext.eval.export", "verl_ext.eval.token_masking", "verl_ext.selection.ddsampling",
                     "verl_ext.preflight", "verl_ext.config.dry_run", "data_prep/mimic.py"):
        assert expected in names


@pytest.mark.parametrize("kind,target", CLIS, ids=[t for _, t in CLIS])
def test_help_shows_every_default(kind, target, monkeypatch):
    parser = _capture(kind, target, monkeypatch)
    missing = [m for p in _parsers(parser) for m in _without_default(p)]
    assert not missing, f"{target}: options whose --help does not show the default:\n  " + "\n  ".join(missing)
