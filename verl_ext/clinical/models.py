"""The one place that loads the clinical models: from local paths, once per process per (model, path, device).

``ModelPaths`` names a local directory (or file) per model; nothing here ever resolves a hub id. Loaders return
cached objects, so every analyzer, labeler and scorer in a process shares one copy of each model:

* ``load_rate_ner(path, device)``   -> ``RateNer`` (DeBERTa token classifier, tokenizer, ``id2label``)
* ``load_biolord(path, device)``    -> ``Embedder`` (MPNet encoder + tokenizer; RaTEScore uses the [CLS] vector)
* ``load_chexbert(ckpt, bert, dev)``-> ``CheXbertModel`` (f1chexbert's ``bert_labeler`` + uncased tokenizer)
* ``load_radgraph(cache, type, dev)``-> ``radgraph.RadGraph`` (the package's own model object)

Devices (``resolve_device``): outside Ray, ``"auto"`` means ``cuda`` when available, else ``cpu``, and
``"cuda:1"``/``"cpu"`` are taken as given. Inside a Ray worker only the GPUs Ray assigned to that worker count: Ray
leaves ``CUDA_VISIBLE_DEVICES`` untouched for a worker that asked for no GPU, so every GPU of the node would look
free there while verl has reserved them all for its actor/rollout workers. With no assigned GPU ``"auto"`` is
``cpu`` and an explicit ``cuda`` device is an error; with assigned GPUs ``"auto"``/``"cuda"`` is the first of them.

Where the real weights come from (download once, on a machine with network access, then point the config at them):
``Angelakeke/RaTE-NER-Deberta`` and ``FremyCompany/BioLORD-2023-C`` (HF model dirs), ``StanfordAIMI/RRG_scorers``
(``chexbert.pth``; ``radgraph-xl.tar.gz`` / ``radgraph.tar.gz`` extracted to ``<radgraph_cache>/<model_type>/``),
``bert-base-uncased`` (tokenizer/config dir for CheXbert). The RadGraph archive's ``config.json`` names its base
BERT by hub id: either have it in the HF cache (``HF_HOME``, with ``HF_HUB_OFFLINE=1``) or rewrite the two
``model_name`` fields to a local directory with ``python -m verl_ext.clinical.models localize-radgraph``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import threading
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

logger = logging.getLogger(__name__)

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.RLock()
#: How many times each kind of model was actually loaded in this process (tests assert "once").
LOAD_COUNTS: Counter = Counter()


@dataclass
class ModelPaths:
    """Local locations of the clinical models (one entry per model; ``None``: that model is not configured)."""

    rate_ner: Optional[str] = None
    """RaTE-NER directory (HF format; real: Angelakeke/RaTE-NER-Deberta)."""
    biolord: Optional[str] = None
    """BioLORD directory (HF format; real: FremyCompany/BioLORD-2023-C)."""
    chexbert_checkpoint: Optional[str] = None
    """``chexbert.pth`` file (real: StanfordAIMI/RRG_scorers/chexbert.pth)."""
    chexbert_bert: Optional[str] = None
    """bert-base-uncased directory: tokenizer + config.json (weights not needed; the checkpoint holds them)."""
    radgraph_cache: Optional[str] = None
    """radgraph ``model_cache_dir``: contains ``<radgraph_model_type>/{config.json, vocabulary/, weights.th}``."""
    radgraph_model_type: str = "radgraph-xl"
    """``radgraph-xl`` (the authors' reward and evaluation model) or ``radgraph`` (v1, labels OBS-DP/OBS-DA/OBS-U)."""

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "ModelPaths":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"ModelPaths: unknown keys {sorted(unknown)}; known keys are {sorted(known)}")
        out = {k: None if v in ("", None) else str(v) for k, v in d.items()}
        if out.get("radgraph_model_type") is None:
            out.pop("radgraph_model_type", None)
        return cls(**out)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def require(value: Optional[str], key: str, what: str, kind: str = "dir") -> str:
    """Check a configured local path, with a message naming the config key and the fix."""
    if not value:
        raise ValueError(
            f"{key} is not set: give the local {what} (models are never fetched from the hub at run time; "
            f"see verl_ext/clinical/models.py for where to get them, or build test fixtures with "
            f"verl_ext.testing.scorer_models.build_all)"
        )
    p = Path(value).expanduser()
    ok = p.is_dir() if kind == "dir" else p.is_file()
    if not ok:
        raise FileNotFoundError(f"{key}={value!r}: no such {'directory' if kind == 'dir' else 'file'} ({what})")
    return str(p)


#: Model family (a scorer's or analyzer's ``needs``) -> the ``ModelPaths`` keys its loader reads: (key, "dir" or
#: "file", what it is). ``check_model_paths`` checks them with the loaders' own rules.
MODEL_FILES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "rate": (("rate_ner", "dir", "RaTE-NER model directory"), ("biolord", "dir", "BioLORD model directory")),
    "radgraph": (("radgraph_cache", "dir", "radgraph model_cache_dir"),),
    "chexbert": (("chexbert_checkpoint", "file", "CheXbert checkpoint chexbert.pth"),
                 ("chexbert_bert", "dir", "bert-base-uncased tokenizer/config directory")),
}
#: What ``load_radgraph`` needs inside ``<radgraph_cache>/<radgraph_model_type>/``.
RADGRAPH_FILES = ("config.json", "weights.th")

#: How a caller names the ``ModelPaths`` keys to the user: a prefix (``"reward.reward_kwargs.models"`` gives
#: ``reward.reward_kwargs.models.radgraph_cache``) or a mapping key -> setting (``{"radgraph_cache": "--radgraph-cache"}``).
SettingNames = Union[str, Mapping[str, str]]


def _setting(names: SettingNames, key: str) -> str:
    if isinstance(names, str):
        return f"{names}.{key}" if names else key
    return names.get(key, key)


def radgraph_model_problem(cache_dir: str, model_type: str, names: SettingNames = "") -> Optional[str]:
    """Why ``load_radgraph(cache_dir, model_type)`` would fail on its model folder, naming both settings and the
    model types the cache does hold (e.g. the tiny test fixtures build ``radgraph`` while the default is
    ``radgraph-xl``); None when ``<cache_dir>/<model_type>/`` has ``config.json`` and ``weights.th``."""
    model_dir = Path(cache_dir).expanduser() / model_type
    if all((model_dir / name).is_file() for name in RADGRAPH_FILES):
        return None
    cache = Path(cache_dir).expanduser()
    held = sorted(p.name for p in cache.iterdir() if all((p / name).is_file() for name in RADGRAPH_FILES)) \
        if cache.is_dir() else []
    cache_key, type_key = _setting(names, "radgraph_cache"), _setting(names, "radgraph_model_type")
    hint = (f"the cache holds model type(s) {', '.join(held)}: set {type_key}={held[0]}" if held else
            f"extract StanfordAIMI/RRG_scorers {model_type}.tar.gz there")
    lacks = " and ".join(n for n in RADGRAPH_FILES if not (model_dir / n).is_file())
    return (f"{type_key}={model_type!r}: {cache_key}={cache_dir!r} has no {model_type}/ model folder ({model_dir} "
            f"lacks {lacks}); {hint}")


def model_path_problems(paths: "ModelPaths", needs: Iterable[str], names: SettingNames) -> list[str]:
    """One line per model path of ``needs`` (keys of ``MODEL_FILES``) that the loaders below would reject, with the
    same rules (unset, no such directory/file, no ``<radgraph_cache>/<radgraph_model_type>/`` model), each naming
    the setting to change. Runs before anything is loaded: the dry run, ``evaluate`` and the trainer start-up."""
    problems = []
    for need in sorted(set(needs)):
        ok = True
        for key, kind, what in MODEL_FILES.get(need, ()):
            try:
                require(getattr(paths, key), _setting(names, key), what, kind=kind)
            except (ValueError, FileNotFoundError) as exc:
                problems.append(str(exc))
                ok = False
        if need == "radgraph" and ok:
            problem = radgraph_model_problem(paths.radgraph_cache, paths.radgraph_model_type, names)
            if problem:
                problems.append(problem)
    return problems


def check_model_paths(paths: "ModelPaths", needs: Iterable[str], names: SettingNames) -> None:
    """Raise ``FileNotFoundError`` listing every ``model_path_problems`` line (nothing is loaded)."""
    problems = model_path_problems(paths, needs, names)
    if problems:
        raise FileNotFoundError("; ".join(problems))


def ray_gpu_ids() -> Optional[list[str]]:
    """The GPU ids Ray assigned to this process (``[]``: none), or None when this is not a Ray worker."""
    ray = sys.modules.get("ray")  # a Ray worker has imported ray long before any model loads
    if ray is None:
        return None
    try:
        if not ray.is_initialized():
            return None
        ctx = ray.get_runtime_context()
        if ctx.worker.mode != ray.WORKER_MODE:
            return None
        return [str(i) for i in ctx.get_accelerator_ids().get("GPU", [])]
    except Exception:  # noqa: BLE001 - no runtime context: not a Ray worker
        return None


def _ray_device(device: str, gpu_ids: list[str]):
    """``resolve_device`` inside a Ray worker that was assigned ``gpu_ids`` (see the module docstring)."""
    import torch

    auto = device in (None, "", "auto")
    dev = None if auto else torch.device(device)
    if not gpu_ids:
        if auto or dev.type == "cpu":
            return torch.device("cpu")
        raise RuntimeError(
            f"device={device!r}: Ray assigned no GPU to this process (it was started with num_gpus=0), so every "
            "CUDA device it can see belongs to other workers (verl reserves the node's GPUs for the actor/rollout "
            "workers). Use device=cpu (or auto), or reserve a GPU for the node actor: "
            "reward.reward_kwargs.actor_num_gpus>0 with actor_placement=pool (a share of the training GPUs that Ray "
            "accounts for) or with GPUs that trainer.n_gpus_per_node leaves free (see verl_ext/node_actor.py)"
        )
    if dev is not None and dev.type == "cpu":
        return dev
    if not torch.cuda.is_available():
        if auto:
            logger.warning("Ray assigned GPU(s) %s but CUDA is not available in this process: using cpu", gpu_ids)
            return torch.device("cpu")
        raise RuntimeError(f"device={device!r}: Ray assigned GPU(s) {gpu_ids} but CUDA is not available here")
    # Ray narrows CUDA_VISIBLE_DEVICES to the assigned ids, unless told not to (then the ids are physical indices).
    noset = os.environ.get("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", "").lower() in ("1", "true")
    allowed = [int(i) for i in gpu_ids] if noset else list(range(len(gpu_ids)))
    index = allowed[0] if dev is None or dev.index is None else dev.index
    if index not in allowed:
        raise RuntimeError(f"device={device!r}: this Ray worker may use cuda:{allowed} only (Ray GPU ids {gpu_ids})")
    return torch.device("cuda", index)


def resolve_device(device: str = "auto"):
    """The torch device for ``device`` in this process; inside Ray, only GPUs that Ray assigned to it."""
    import torch

    gpu_ids = ray_gpu_ids()
    if gpu_ids is not None:
        return _ray_device(device, gpu_ids)
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} requested but CUDA is not available in this process")
    return dev


def _cached(key: tuple, build: Callable[[], Any]) -> Any:
    with _LOCK:
        if key not in _CACHE:
            logger.info("loading %s", key)
            _CACHE[key] = build()
            LOAD_COUNTS[key[0]] += 1
        return _CACHE[key]


def clear_cache() -> None:
    """Forget every loaded model (tests; frees memory once nothing else holds a reference)."""
    with _LOCK:
        _CACHE.clear()


# ----------------------------------------------------------------------------------------------------------------
# RaTE-NER and BioLORD
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class RateNer:
    tokenizer: Any
    model: Any
    id2label: dict
    device: Any


@dataclass
class Embedder:
    tokenizer: Any
    model: Any
    device: Any


def load_rate_ner(path: str, device: str = "auto") -> RateNer:
    path = require(path, "rate_ner", "RaTE-NER model directory")
    dev = resolve_device(device)

    def build() -> RateNer:
        from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForTokenClassification.from_pretrained(path, local_files_only=True).eval().to(dev)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        return RateNer(tokenizer=tok, model=model, id2label=dict(config.id2label), device=dev)

    return _cached(("rate_ner", path, str(dev)), build)


def load_biolord(path: str, device: str = "auto") -> Embedder:
    path = require(path, "biolord", "BioLORD embedding model directory")
    dev = resolve_device(device)

    def build() -> Embedder:
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(dev)
        return Embedder(tokenizer=tok, model=model, device=dev)

    return _cached(("biolord", path, str(dev)), build)


# ----------------------------------------------------------------------------------------------------------------
# CheXbert
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class CheXbertModel:
    tokenizer: Any
    model: Any
    device: Any


#: Keys a real ``chexbert.pth`` may carry that current BertModel versions no longer have as parameters/buffers.
_CHEXBERT_IGNORABLE = ("bert.embeddings.position_ids",)


def load_chexbert(checkpoint: str, bert_dir: str, device: str = "auto") -> CheXbertModel:
    checkpoint = require(checkpoint, "chexbert_checkpoint", "CheXbert checkpoint chexbert.pth", kind="file")
    bert_dir = require(bert_dir, "chexbert_bert", "bert-base-uncased tokenizer/config directory")
    dev = resolve_device(device)

    def build() -> CheXbertModel:
        import torch
        from transformers import AutoConfig, AutoModel, BertTokenizer

        from verl_ext.clinical import compat

        with compat.quiet_imports():
            from f1chexbert.f1chexbert import bert_labeler

        class _LocalBertLabeler(bert_labeler):
            """f1chexbert's ``bert_labeler`` (its forward and heads), with the BERT config read from a local dir
            instead of the hard-wired hub id ``bert-base-uncased``."""

            def __init__(self, config_dir: str):
                torch.nn.Module.__init__(self)
                self.bert = AutoModel.from_config(AutoConfig.from_pretrained(config_dir, local_files_only=True))
                hidden_size = self.bert.pooler.dense.in_features
                self.dropout = torch.nn.Dropout(0.1)
                self.linear_heads = torch.nn.ModuleList([torch.nn.Linear(hidden_size, 4, bias=True) for _ in range(13)])
                self.linear_heads.append(torch.nn.Linear(hidden_size, 2, bias=True))

        tok = BertTokenizer.from_pretrained(bert_dir, local_files_only=True)
        model = _LocalBertLabeler(bert_dir)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("model_state_dict", state)
        state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
        result = model.load_state_dict(state, strict=False)
        unexpected = [k for k in result.unexpected_keys if k not in _CHEXBERT_IGNORABLE]
        if result.missing_keys or unexpected:
            raise RuntimeError(
                f"chexbert_checkpoint={checkpoint!r} does not match the CheXbert architecture built from "
                f"chexbert_bert={bert_dir!r}: missing {result.missing_keys[:5]}, unexpected {unexpected[:5]}"
            )
        model = model.to(dev).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return CheXbertModel(tokenizer=tok, model=model, device=dev)

    return _cached(("chexbert", checkpoint, bert_dir, str(dev)), build)


# ----------------------------------------------------------------------------------------------------------------
# RadGraph
# ----------------------------------------------------------------------------------------------------------------


def load_radgraph(cache_dir: str, model_type: str = "radgraph-xl", device: str = "auto"):
    """radgraph 0.1.18's ``RadGraph`` built from ``<cache_dir>/<model_type>/`` (never downloads)."""
    cache_dir = require(cache_dir, "radgraph_cache", "radgraph model_cache_dir")
    problem = radgraph_model_problem(cache_dir, model_type)
    if problem:
        raise FileNotFoundError(problem)
    dev = resolve_device(device)

    def build():
        from verl_ext.clinical import compat

        compat.install()
        with compat.quiet_imports():
            from radgraph import RadGraph
        cuda = -1 if dev.type == "cpu" else (dev.index or 0)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Using device: ..."
            rg = RadGraph(model_type=model_type, model_cache_dir=cache_dir, cuda=cuda)
        for p in rg.model.parameters():
            p.requires_grad_(False)
        return rg

    return _cached(("radgraph", cache_dir, model_type, str(dev)), build)


def localize_radgraph(model_dir: str, base_bert_dir: str) -> list[str]:
    """Rewrite the base-BERT ``model_name`` fields of a RadGraph ``config.json`` to a local directory (in place,
    keeping ``config.json.orig``). Returns the previous values."""
    cfg_path = Path(model_dir) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    old = [
        cfg["dataset_reader"]["token_indexers"]["bert"]["model_name"],
        cfg["model"]["embedder"]["token_embedders"]["bert"]["model_name"],
    ]
    backup = cfg_path.with_suffix(".json.orig")
    if not backup.exists():
        backup.write_text(cfg_path.read_text())
    base = str(Path(base_bert_dir).resolve())
    cfg["dataset_reader"]["token_indexers"]["bert"]["model_name"] = base
    cfg["model"]["embedder"]["token_embedders"]["bert"]["model_name"] = base
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return old


def _main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_ext.clinical.models", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    loc = sub.add_parser("localize-radgraph", help="point a RadGraph config.json at a local base-BERT directory")
    loc.add_argument("model_dir", help="<radgraph_cache>/<model_type> (holds config.json)")
    loc.add_argument("base_bert_dir", help="local copy of the base BERT named in config.json")
    args = parser.parse_args(argv)
    if args.cmd == "localize-radgraph":
        old = localize_radgraph(args.model_dir, args.base_bert_dir)
        print(f"rewrote model_name {old} -> {Path(args.base_bert_dir).resolve()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
