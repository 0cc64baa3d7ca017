"""Offline fixtures of the clinical scorer models, in their real on-disk formats, randomly initialised.

Each builder writes one model directory in seconds and returns its path. The directories load through exactly the
code that loads the real weights (``verl_ext.clinical.models`` and the upstream packages RaTEScore, radgraph,
f1chexbert), so tests exercise the real tokenise -> infer -> decode -> score paths without any download. The
numbers they produce are meaningless.

* ``build_rate_ner``: Angelakeke/RaTE-NER-Deberta -> an HF dir with a DebertaV2ForTokenClassification (the 11 RaTE
  IOB labels in ``id2label``) and a DebertaV2 tokenizer;
* ``build_biolord``: FremyCompany/BioLORD-2023-C -> an HF dir with an MPNetModel and an MPNet tokenizer;
* ``build_chexbert``: StanfordAIMI/RRG_scorers ``chexbert.pth`` + bert-base-uncased -> ``chexbert.pth`` =
  ``{"model_state_dict": module.-prefixed BERT + 14 heads}`` and a ``bert/`` HF dir (config + uncased tokenizer);
* ``build_radgraph``: StanfordAIMI/RRG_scorers ``radgraph.tar.gz`` (or -xl) + its base BERT -> radgraph 0.1.18's
  cache layout ``<cache>/<model_type>/{config.json, vocabulary/, weights.th}`` and the base-BERT dir its config names;
* ``build_all``: all of the above under one root, laid out as a recipe's ``MODELS_DIR``, RadGraph as ``radgraph-xl``
  (the type the reward, the analyzer and ``evaluate`` load by default); ``shared_models()`` once per process.

``full_size=True`` gives the real architecture sizes (DeBERTa-v3-base, MPNet-base, BERT-base; 12 layers, hidden 768)
with random weights, for benchmarks; vocabularies stay small (a radiology word list plus single characters), which
changes neither the per-token compute nor the code paths. Tokenizers are built in memory from word lists
(transformers 5 supports this), so no sentencepiece model or download is needed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

#: The RaTE-NER label set, in the order of the real model's ``config.id2label``.
RATE_LABELS: tuple[str, ...] = (
    "B-ABNORMALITY",
    "I-ABNORMALITY",
    "B-NON-ABNORMALITY",
    "I-NON-ABNORMALITY",
    "B-DISEASE",
    "I-DISEASE",
    "B-NON-DISEASE",
    "I-NON-DISEASE",
    "B-ANATOMY",
    "I-ANATOMY",
    "O",
)

#: RadGraph v1 (``model_type="radgraph"``) label vocabularies.
RADGRAPH_NER_LABELS: tuple[str, ...] = ("ANAT-DP", "OBS-DP", "OBS-DA", "OBS-U")
RADGRAPH_RELATION_LABELS: tuple[str, ...] = ("located_at", "modify", "suggestive_of")
#: RadGraph-XL label vocabularies.
RADGRAPH_XL_NER_LABELS: tuple[str, ...] = (
    "Anatomy::definitely present",
    "Observation::definitely present",
    "Observation::definitely absent",
    "Observation::uncertain",
)

# Words of chest X-ray reports: every one becomes a single token, the rest falls back to characters.
_WORDS = """
the a an of and or with without in on at to from for by is are was were be been there no not any new old
heart size normal mildly moderately severely enlarged cardiomegaly cardiac silhouette mediastinal
mediastinum contours hilar hila lungs lung clear pleural effusion effusions pneumothorax consolidation
consolidations opacity opacities opacification atelectasis atelectatic edema pulmonary vascular congestion
pneumonia infection aspiration nodule nodules mass lesion lesions fracture fractures rib ribs osseous
structures bony degenerative changes spine thoracic lumbar sternotomy wires wire tube tubes catheter line lines
picc port endotracheal nasogastric enteric tip terminates projects above below carina stomach svc atrium
right left bilateral bibasilar basilar base bases apex apical upper lower middle lobe lobes hemidiaphragm
diaphragm costophrenic angle angles blunting small large trace minimal mild moderate severe stable unchanged
improved worsened increased decreased interval since prior comparison study exam radiograph frontal lateral
views view portable ap pa chest acute cardiopulmonary process abnormality abnormalities findings finding
impression evidence focal airspace disease suggestive likely possibly possible may represent could
concerning consistent compatible identified seen noted present visualized within limits unremarkable
calcified calcification granuloma scarring fibrosis emphysema hyperinflated hyperexpanded volumes low
lucency lucent free air subdiaphragmatic device devices pacemaker leads lead aorta aortic knob tortuous
tortuosity calcifications thickening interstitial markings prominence prominent engorgement overload
hernia hiatal support appropriate position positioned removed placed placement again redemonstrated
otherwise also both but which that this these has have had than more less upper-zone retrocardiac
perihilar parenchymal subsegmental linear plate-like streaky patchy hazy ill-defined well-defined
""".split()
_PUNCT = list(".,;:!?()-/'\"%_[]&+=*<>#@$")
_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789") + _PUNCT


@dataclass(frozen=True)
class _Size:
    hidden: int
    layers: int
    heads: int
    intermediate: int


_TINY = _Size(hidden=32, layers=2, heads=2, intermediate=64)
_FULL = _Size(hidden=768, layers=12, heads=12, intermediate=3072)


def _size(full_size: bool) -> _Size:
    return _FULL if full_size else _TINY


def _init_range(full_size: bool) -> float:
    # With the usual 0.02, a tiny random encoder maps every input to almost the same [CLS] vector, so labels and
    # similarities would not depend on the text; a wider init makes the fixtures input-sensitive.
    return 0.02 if full_size else 0.3


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _wordpiece_vocab(specials: list[str], lowercase: bool = True) -> dict[str, int]:
    tokens: list[str] = list(specials)
    words = [w.lower() for w in _WORDS] if lowercase else list(_WORDS)
    for piece in words + _CHARS + ["##" + c for c in _CHARS]:
        if piece not in tokens:
            tokens.append(piece)
    return {tok: i for i, tok in enumerate(tokens)}


def _write_bert_dir(path: Path, full_size: bool, seed: int, with_weights: bool = True) -> Path:
    """An uncased BERT (bert-base-uncased / BiomedBERT stand-in): config, WordPiece tokenizer, optional weights."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = _wordpiece_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    tokenizer.save_pretrained(path)
    # A plain vocab.txt as well, as the real bert-base-uncased directory has.
    (path / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    s = _size(full_size)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=s.hidden,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        intermediate_size=s.intermediate,
        max_position_embeddings=512,
        pad_token_id=0,
        initializer_range=_init_range(full_size),
    )
    if with_weights:
        _seed(seed)
        BertModel(config).save_pretrained(path)
    else:
        config.save_pretrained(path)
    return path


def build_rate_ner(path: str | os.PathLike, full_size: bool = False, seed: int = 0) -> Path:
    """RaTE-NER stand-in: a DebertaV2ForTokenClassification with the 11 RaTE labels + a DebertaV2 tokenizer."""
    from transformers import DebertaV2Config, DebertaV2ForTokenClassification, DebertaV2Tokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = [("[PAD]", 0.0), ("[UNK]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[MASK]", 0.0)]
    pieces = [("\u2581" + w, -5.0) for w in dict.fromkeys(_WORDS)]
    pieces += [("\u2581" + c, -8.0) for c in _CHARS] + [(c, -9.0) for c in _CHARS] + [("\u2581", -10.0)]
    upper = [("\u2581" + w.capitalize(), -6.0) for w in dict.fromkeys(_WORDS) if w[0].isalpha()]
    upper += [(c.upper(), -9.0) for c in _CHARS if c.isalpha()]
    upper += [("\u2581" + c.upper(), -8.5) for c in _CHARS if c.isalpha()]
    tokenizer = DebertaV2Tokenizer(vocab=specials + pieces + upper, unk_id=1)
    tokenizer.save_pretrained(path)
    s = _size(full_size)
    config = DebertaV2Config(
        vocab_size=len(tokenizer),
        hidden_size=s.hidden,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        intermediate_size=s.intermediate,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=256,
        max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        type_vocab_size=0,
        pad_token_id=0,
        id2label=dict(enumerate(RATE_LABELS)),
        label2id={label: i for i, label in enumerate(RATE_LABELS)},
    )
    _seed(seed)
    model = DebertaV2ForTokenClassification(config)
    if not full_size:
        # Tiny random heads predict "O" or garbage unevenly; spread the logits so that tests see entities.
        import torch

        with torch.no_grad():
            model.classifier.weight.mul_(8.0)
    model.save_pretrained(path)
    return path


def build_biolord(path: str | os.PathLike, full_size: bool = False, seed: int = 1) -> Path:
    """BioLORD-2023-C stand-in: an MPNetModel + MPNet tokenizer (RaTEScore takes the [CLS] vector)."""
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = _wordpiece_vocab(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"])
    tokenizer = MPNetTokenizer(vocab=vocab, do_lower_case=True)
    tokenizer.save_pretrained(path)
    s = _size(full_size)
    config = MPNetConfig(
        vocab_size=len(vocab),
        hidden_size=s.hidden,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        intermediate_size=s.intermediate,
        max_position_embeddings=514,
        pad_token_id=1,
        initializer_range=_init_range(full_size),
    )
    _seed(seed)
    MPNetModel(config).save_pretrained(path)
    return path


def build_chexbert(path: str | os.PathLike, full_size: bool = False, seed: int = 2,
                   bert_dir: str | os.PathLike | None = None) -> Path:
    """CheXbert stand-in: ``<path>/chexbert.pth`` (module.-prefixed BERT + 14 heads) and its tokenizer/config dir
    ``bert_dir`` (default ``<path>/bert``)."""
    import torch
    from transformers import AutoConfig, AutoModel

    path = Path(path)
    bert_dir = _write_bert_dir(Path(bert_dir) if bert_dir else path / "bert", full_size=full_size, seed=seed,
                               with_weights=False)
    _seed(seed)
    bert = AutoModel.from_config(AutoConfig.from_pretrained(bert_dir))
    hidden = bert.config.hidden_size
    heads = [torch.nn.Linear(hidden, 4) for _ in range(13)] + [torch.nn.Linear(hidden, 2)]
    state = {}
    for k, v in bert.state_dict().items():
        state[f"module.bert.{k}"] = v
    for i, head in enumerate(heads):
        state[f"module.linear_heads.{i}.weight"] = head.weight.detach()
        state[f"module.linear_heads.{i}.bias"] = head.bias.detach()
    torch.save({"model_state_dict": state}, path / "chexbert.pth")
    return path


def _radgraph_config(bert_dir: Path, max_span_width: int, feature_size: int, ff_dim: int) -> dict:
    bert = {"type": "pretrained_transformer_mismatched", "model_name": str(bert_dir), "max_length": 512}
    return {
        "dataset_reader": {
            "type": "dygie",
            "max_span_width": max_span_width,
            "token_indexers": {"bert": dict(bert)},
        },
        "model": {
            "type": "dygie",
            "embedder": {"token_embedders": {"bert": dict(bert)}},
            "feature_size": feature_size,
            "feedforward_params": {"dropout": 0.4, "hidden_dims": ff_dim, "num_layers": 2},
            "initializer": {"regexes": []},
            "loss_weights": {"coref": 0, "events": 0, "ner": 1, "relation": 1},
            "max_span_width": max_span_width,
            "module_initializer": {"regexes": []},
            "modules": {
                "coref": {"coref_prop": 0, "max_antecedents": 100, "spans_per_word": 0.3},
                "events": {
                    "argument_spans_per_word": 0.8,
                    "loss_weights": {"arguments": 0.5, "trigger": 1},
                    "trigger_spans_per_word": 0.3,
                },
                "ner": {},
                "relation": {"spans_per_word": 0.5},
            },
            "target_task": "relation",
        },
    }


def build_radgraph(
    cache_dir: str | os.PathLike,
    model_type: str = "radgraph-xl",
    full_size: bool = False,
    seed: int = 3,
) -> Path:
    """RadGraph stand-in in radgraph 0.1.18's cache layout: ``<cache_dir>/<model_type>/{config.json, vocabulary/,
    weights.th}`` plus ``<cache_dir>/base-bert`` (the transformer its config names). Pass ``cache_dir`` as
    radgraph's ``model_cache_dir``. Returns ``cache_dir``."""
    import torch

    from verl_ext.clinical import compat

    compat.install()
    with compat.quiet_imports():
        from radgraph.allennlp.data import Vocabulary
        from radgraph.allennlp.modules import text_field_embedders, token_embedders
        from radgraph.dygie.models import dygie

    cache_dir = Path(cache_dir)
    model_dir = cache_dir / model_type
    model_dir.mkdir(parents=True, exist_ok=True)
    bert_dir = _write_bert_dir(cache_dir / "base-bert", full_size=full_size, seed=seed)
    max_span_width = 8 if full_size else 4
    config = _radgraph_config(
        bert_dir, max_span_width, feature_size=20 if full_size else 8, ff_dim=150 if full_size else 16
    )
    (model_dir / "config.json").write_text(json.dumps(config, indent=2))

    ner_labels = RADGRAPH_NER_LABELS if model_type == "radgraph" else RADGRAPH_XL_NER_LABELS
    vocab = Vocabulary()
    vocab.add_token_to_namespace("", f"{model_type}__ner_labels")
    for label in ner_labels:
        vocab.add_token_to_namespace(label, f"{model_type}__ner_labels")
    for label in RADGRAPH_RELATION_LABELS:
        vocab.add_token_to_namespace(label, f"{model_type}__relation_labels")
    vocab.save_to_files(str(model_dir / "vocabulary"))

    # Build the DyGIE model exactly as radgraph.RadGraph.__init__ does, then save its state dict.
    from dotmap import DotMap

    cfg = DotMap(json.loads((model_dir / "config.json").read_text()))
    _seed(seed)
    token_embedder = token_embedders.PretrainedTransformerMismatchedEmbedder(
        model_name=cfg.model.embedder.token_embedders.bert.model_name,
        max_length=cfg.model.embedder.token_embedders.bert.max_length,
    )
    embedder = text_field_embedders.BasicTextFieldEmbedder({"bert": token_embedder})
    model_dict = cfg.model
    for name in ["type", "embedder", "initializer", "module_initializer"]:
        del model_dict[name]
    vocab = Vocabulary.from_files(str(model_dir / "vocabulary"))
    model = dygie.DyGIE(vocab=vocab, embedder=embedder, **model_dict)
    torch.save(model.state_dict(), model_dir / "weights.th")
    if not full_size:
        _calibrate_tiny_radgraph(cache_dir, model_type)
    return cache_dir


_CALIBRATION_REPORTS = (
    "Heart size is normal. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly. Bibasilar atelectasis.",
    "The heart is enlarged. Small left pleural effusion.",
    "Lungs are clear. No focal consolidation.",
)


def _calibrate_tiny_radgraph(cache_dir: Path, model_type: str) -> None:
    """A tiny random DyGIE scores every span almost alike (all spans tagged, or none). Rescale its NER and relation
    output layers so that their logits vary across spans with about a third above the null label's 0; the model
    then tags some spans and relates some pairs, input-dependently. Weights are re-saved in place."""
    import contextlib
    import io

    import torch

    from verl_ext.clinical import compat

    compat.install()
    with compat.quiet_imports():
        from radgraph import RadGraph
    with contextlib.redirect_stdout(io.StringIO()):
        rg = RadGraph(model_type=model_type, model_cache_dir=str(cache_dir), cuda=-1)
    model = rg.model
    ner_ns, rel_ns = f"{model_type}__ner_labels", f"{model_type}__relation_labels"
    layers = {
        "ner": model._ner._ner_scorers[ner_ns][1]._module,
        "relation": model._relation._relation_scorers[rel_ns],
    }
    seen: dict[str, list] = {"ner": [], "relation": []}
    hooks = [
        layer.register_forward_hook(
            lambda _m, _i, out, key=key: seen[key].append(out.detach().reshape(-1, out.shape[-1]))
        )
        for key, layer in layers.items()
    ]
    with torch.no_grad():
        rg(list(_CALIBRATION_REPORTS))
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for key, layer in layers.items():
            logits = torch.cat(seen[key])
            mean, std = logits.mean(0), logits.std(0).clamp_min(1e-6)
            scale = 2.0 / std  # logits ~ N(-1.5, 2): roughly a fifth above 0 per label
            layer.weight.mul_(scale[:, None])
            layer.bias.copy_((layer.bias - mean) * scale - 1.5)
    torch.save(model.state_dict(), cache_dir / model_type / "weights.th")


@dataclass(frozen=True)
class ScorerModelPaths:
    """Where ``build_all`` put each model (the fields mirror ``verl_ext.clinical.models.ModelPaths``)."""

    rate_ner: Path
    biolord: Path
    chexbert_checkpoint: Path
    chexbert_bert: Path
    radgraph_cache: Path
    radgraph_model_type: str

    def as_dict(self) -> dict[str, str]:
        return {
            "rate_ner": str(self.rate_ner),
            "biolord": str(self.biolord),
            "chexbert_checkpoint": str(self.chexbert_checkpoint),
            "chexbert_bert": str(self.chexbert_bert),
            "radgraph_cache": str(self.radgraph_cache),
            "radgraph_model_type": self.radgraph_model_type,
        }


#: The RadGraph model a user gets by default: ``ModelPaths.radgraph_model_type``, which the reward, the edit analyzer,
#: ``evaluate`` and the recipes use unless told otherwise.
DEFAULT_RADGRAPH_MODEL_TYPE = "radgraph-xl"


def build_all(
    root: str | os.PathLike, full_size: bool = False, radgraph_model_type: str = DEFAULT_RADGRAPH_MODEL_TYPE
) -> ScorerModelPaths:
    """Build every scorer fixture under ``root`` (reused when already complete), laid out as the recipes read a
    ``MODELS_DIR`` (``recipes/common.sh``): ``RaTE-NER-Deberta/``, ``BioLORD-2023-C/``, ``chexbert.pth``,
    ``bert-base-uncased/`` and ``radgraph/<radgraph_model_type>/``, so ``MODELS_DIR=<root>`` runs a recipe with them.
    The default model type is the user's default (`DEFAULT_RADGRAPH_MODEL_TYPE`), so that commands that do not
    name a type find the model."""
    root = Path(root)
    marker = root / ".complete.json"
    paths = ScorerModelPaths(
        rate_ner=root / "RaTE-NER-Deberta",
        biolord=root / "BioLORD-2023-C",
        chexbert_checkpoint=root / "chexbert.pth",
        chexbert_bert=root / "bert-base-uncased",
        radgraph_cache=root / "radgraph",
        radgraph_model_type=radgraph_model_type,
    )
    spec = {"full_size": full_size, "radgraph_model_type": radgraph_model_type, "layout": "MODELS_DIR"}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return paths
    build_rate_ner(paths.rate_ner, full_size=full_size)
    build_biolord(paths.biolord, full_size=full_size)
    build_chexbert(root, full_size=full_size, bert_dir=paths.chexbert_bert)
    build_radgraph(paths.radgraph_cache, model_type=radgraph_model_type, full_size=full_size)
    marker.write_text(json.dumps(spec))
    return paths


def install_hf_cache_entry(hf_home: str | os.PathLike, repo_id: str, src_dir: str | os.PathLike) -> Path:
    """Lay out ``src_dir`` as the HF hub cache entry of ``repo_id`` under ``hf_home`` (``hub/models--…/snapshots``),
    so that code hard-wired to a hub id (f1chexbert's ``'bert-base-uncased'``) resolves it with HF_HUB_OFFLINE=1."""
    import shutil

    repo_dir = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    sha = "0" * 40
    snap = repo_dir / "snapshots" / sha
    if snap.exists():
        shutil.rmtree(snap)
    shutil.copytree(src_dir, snap)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(sha)
    return snap


_SHARED: dict[tuple, ScorerModelPaths] = {}


def shared_models(full_size: bool = False,
                  radgraph_model_type: str = DEFAULT_RADGRAPH_MODEL_TYPE) -> ScorerModelPaths:
    """``build_all`` once per process, under ``$VERL_EXT_SCORER_FIXTURES`` (reused across runs when set) or a fresh
    temporary directory. Test suites call this from a session fixture."""
    import tempfile

    key = (full_size, radgraph_model_type)
    if key not in _SHARED:
        root = os.environ.get("VERL_EXT_SCORER_FIXTURES")
        if root:
            base = Path(root)
        else:
            import atexit
            import shutil

            base = Path(tempfile.mkdtemp(prefix="verl_ext_scorer_models_"))
            atexit.register(shutil.rmtree, base, True)
        name = f"{'full' if full_size else 'tiny'}-{radgraph_model_type}"
        _SHARED[key] = build_all(base / name, full_size=full_size, radgraph_model_type=radgraph_model_type)
    return _SHARED[key]
