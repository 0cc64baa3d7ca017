"""Tiny random scorer models in their real formats (built once per test process; see verl_ext.testing.scorer_models)."""

import pytest


@pytest.fixture(scope="session")
def scorer_paths():
    from verl_ext.testing.scorer_models import shared_models

    return shared_models()


@pytest.fixture(scope="session")
def model_paths(scorer_paths):
    """The fixtures as a ``ModelPaths``-style dict."""
    return scorer_paths.as_dict()
