"""The tiny scorer fixtures are found where a user's command looks for the real models: the recipes' MODELS_DIR
names (recipes/common.sh) and the RadGraph model type that the reward, the edit analyzer and ``evaluate`` load when
no type is given (``radgraph-xl``). With the old fixtures (type ``radgraph``, other folder names) README's commands
failed with the tiny models: RadGraph found no ``radgraph-xl`` folder."""
import re
from pathlib import Path

from verl_ext.clinical.models import ModelPaths
from verl_ext.testing.scorer_models import shared_models

COMMON_SH = Path(__file__).resolve().parents[2] / "recipes" / "common.sh"


def test_fixtures_use_the_users_default_radgraph_model_type():
    from verl_ext.clinical.radgraph import RadGraphAnnotator

    paths = shared_models()
    assert paths.radgraph_model_type == ModelPaths().radgraph_model_type == "radgraph-xl"
    annotator = RadGraphAnnotator(str(paths.radgraph_cache), device="cpu")  # the loader's default type
    (annotation,) = annotator.annotate(["Mild cardiomegaly. Small left pleural effusion."])
    labels = {e["label"] for e in annotation["entities"].values()}
    # RadGraph-XL labels ("Anatomy::definitely present"), not v1's ANAT-DP
    assert labels and all("::" in label for label in labels), labels


def test_fixtures_are_laid_out_as_a_recipes_models_dir():
    # _model_overrides: [key]="${..._PATH:-${base:+$base/<name>}}"
    names = dict(re.findall(r'\[(\w+)\]="\$\{\w+:-\$\{base:\+\$base/([^}]+)\}\}"', COMMON_SH.read_text()))
    assert set(names) == {"rate_ner", "biolord", "radgraph_cache", "chexbert_checkpoint", "chexbert_bert"}, names
    paths = shared_models()
    root = paths.radgraph_cache.parent
    for key, name in names.items():
        assert getattr(paths, key) == root / name, key
        assert (root / name).exists(), name
