"""`when_imported`: callbacks run right after the module is imported, never import it themselves."""
import sys
import textwrap

import pytest

from verl_ext.post_import import when_imported


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_registry_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("REGISTRY = {}\nLOADED = True\n")
    (pkg / "sub" / "leaf.py").write_text(textwrap.dedent("""
        from fake_registry_pkg.sub import REGISTRY
        REGISTRY['leaf'] = 1
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fake_registry_pkg"
    for name in [m for m in sys.modules if m.startswith("fake_registry_pkg")]:
        del sys.modules[name]


def test_callback_runs_after_import_not_before(fake_package):
    seen = []

    def register():
        module = sys.modules["fake_registry_pkg.sub"]
        seen.append(module.LOADED)  # the module body has run completely
        module.REGISTRY["ours"] = True

    when_imported("fake_registry_pkg.sub", register)
    assert seen == [] and "fake_registry_pkg.sub" not in sys.modules
    from fake_registry_pkg.sub import REGISTRY

    assert seen == [True] and REGISTRY["ours"] is True
    import fake_registry_pkg.sub.leaf  # noqa: F401  (a submodule import does not re-run the callback)

    assert seen == [True]


def test_importing_a_submodule_first_triggers_the_package_callback(fake_package):
    seen = []
    when_imported("fake_registry_pkg.sub", lambda: seen.append("sub"))
    import fake_registry_pkg.sub.leaf  # noqa: F401

    assert seen == ["sub"]


def test_already_imported_runs_now(fake_package):
    import fake_registry_pkg.sub  # noqa: F401

    seen = []
    when_imported("fake_registry_pkg.sub", lambda: seen.append(1))
    assert seen == [1]


def test_failing_callback_is_logged_and_import_succeeds(fake_package, caplog):
    def broken():
        raise RuntimeError("boom")

    when_imported("fake_registry_pkg.sub", broken)
    import fake_registry_pkg.sub  # noqa: F401

    assert "boom" in caplog.text and "fake_registry_pkg.sub" in caplog.text
