"""Configuration of the radiology reward (``reward.reward_manager.name=radiology``).

verl 0.9.1 builds a reward manager as ``cls(config=<full trainer config>, tokenizer, compute_score,
reward_router_address=..., reward_model_tokenizer=...)``; it passes no manager-specific kwargs. Like verl's own DAPO
manager, ours reads its settings from ``config.reward.reward_kwargs`` (add it with a ``+``), e.g.::

    reward.reward_manager.name=radiology
    +reward.reward_kwargs.models.rate_ner=/models/RaTE-NER-Deberta
    +reward.reward_kwargs.models.biolord=/models/BioLORD-2023-C
    +reward.reward_kwargs.models.chexbert_checkpoint=/models/chexbert.pth
    +reward.reward_kwargs.models.chexbert_bert=/models/bert-base-uncased
    +reward.reward_kwargs.models.radgraph_cache=/models/radgraph       # holds radgraph-xl/{config.json,...}
    +reward.reward_kwargs.components={radgraph_f1:1.0,chexbert_micro_f1_14:1.0,ratescore:1.0}

Keyword arguments given to the manager's constructor directly (tests, custom launchers) override those keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from verl_ext.clinical.models import ModelPaths
from verl_ext.clinical.scorer import ClinicalScorerConfig

#: The paper's reward (App. D): R = RadGraph-F1 + CheXbert-Micro-F1-14 + RaTE, unweighted.
PAPER_COMPONENTS: dict[str, float] = {"radgraph_f1": 1.0, "chexbert_micro_f1_14": 1.0, "ratescore": 1.0}


@dataclass
class RadiologyRewardConfig:
    components: dict[str, float] = field(default_factory=lambda: dict(PAPER_COMPONENTS))
    """Component name -> weight; the reward is the weighted sum. Names: see ``verl_ext.reward.components``
    (radgraph_f1, chexbert_micro_f1_14, ratescore, chexbert_inverse_frequency, bleu2, or any registered one).
    Default: the paper's unweighted sum (App. D)."""

    models: ModelPaths = field(default_factory=ModelPaths)
    """Local model locations (``verl_ext.clinical.models.ModelPaths``); only the ones the components need."""

    device: str = "auto"
    """Where the scorer models run: "auto" (cuda when the scoring process sees one), "cpu", "cuda[:i]"."""

    service: str = "auto"
    """"local": models in each reward-loop worker process, requests batched per process. "actor": one shared Ray
    actor per node holds the models and batches the requests of all reward workers on that node. "auto": "actor"
    inside a Ray worker, else "local". See ``verl_ext.reward.service``."""

    actor_num_cpus: float = 1.0
    """Ray CPUs reserved by the scorer actor."""
    actor_num_gpus: float = 0.0
    """Ray GPUs reserved by the scorer actor (e.g. 0.1). Needs a GPU that the trainer's resource pool leaves free."""
    actor_share_gpus: bool = False
    """Let the scorer actor see the node's GPUs without reserving any (Ray then does not hide them); it shares the
    rollout/training GPUs, so leave memory for it (vLLM gpu_memory_utilization)."""

    max_batch: int = 512
    """Most requests scored in one batch by the micro-batcher."""
    max_wait_ms: float = 20.0
    """How long the micro-batcher waits for more requests after the first one of a batch arrives."""

    ner_batch_size: int = 32
    embed_batch_size: int = 256
    chexbert_batch_size: int = 64
    radgraph_batch_size: int = 16
    cache_mb: float = 256.0
    """Byte budget (MiB) of each scorer model's per-text cache (``ClinicalScorerConfig.cache_mb``)."""
    embedding_cache_mb: float = 128.0
    """Byte budget (MiB) of the BioLORD entity-vector cache."""
    rate_affinity: str = "long"
    """RaTEScore affinity matrix ("long" is the package default)."""

    radgraph_level: str = "partial"
    """RadGraph reward level: "partial" (RG_ER, the paper's "RadGraph F1"), "simple" or "complete"."""
    radgraph_lowercase: bool = True
    """Compare RadGraph entity tokens lower-cased (the upstream fix after radgraph 0.1.18; "Effusion" matches
    "effusion"). False reproduces the released package."""
    chexbert_uncertain: str = "positive"
    """How CheXbert's "uncertain" counts: "positive" (the paper/authors' convention) or "negative"."""
    class_frequencies: Optional[str] = None
    """JSON of training-set CheXbert positive rates (``python -m verl_ext.reward.class_frequencies``); required by
    the chexbert_inverse_frequency component."""
    bleu_n: int = 2
    """n of the BLEU component (DEER uses BLEU-2)."""

    on_invalid: str = "count"
    """A sample that cannot be scored (empty reference, reference without RaTE entities, ...): "count" it (reward =
    the valid components, ``invalid=1`` and the reason in reward_extra_info) or "raise"."""
    reuse_edit_analysis: bool = True
    """Reuse a RaTE analysis of the response that the edit step already computed (trajectory extra field)."""
    edit_analysis_key: str = "edit_analysis"
    """Trajectory extra-field key of that analysis (a ``ReportAnalysis`` or its ``to_dict()``)."""

    def __post_init__(self) -> None:
        if isinstance(self.models, dict):
            self.models = ModelPaths.from_dict(self.models)
        self.components = {str(k): float(v) for k, v in dict(self.components).items()}
        if not self.components:
            raise ValueError("RadiologyRewardConfig.components is empty: name at least one reward component")
        if self.service not in ("auto", "local", "actor"):
            raise ValueError(f"service={self.service!r}: expected 'auto', 'local' or 'actor'")
        if self.on_invalid not in ("count", "raise"):
            raise ValueError(f"on_invalid={self.on_invalid!r}: expected 'count' or 'raise'")
        if self.chexbert_uncertain not in ("positive", "negative"):
            raise ValueError(f"chexbert_uncertain={self.chexbert_uncertain!r}: expected 'positive' or 'negative'")
        if self.radgraph_level not in ("simple", "partial", "complete"):
            raise ValueError(f"radgraph_level={self.radgraph_level!r}: expected simple, partial or complete")

    @classmethod
    def from_any(cls, *sources: Any) -> "RadiologyRewardConfig":
        """Merge dicts / DictConfigs left to right (later wins; ``models`` merged key by key)."""
        merged: dict = {}
        for src in sources:
            if src is None:
                continue
            d = _to_plain(src)
            for k, v in d.items():
                if k == "models" and isinstance(v, dict):
                    merged.setdefault("models", {}).update(v)
                elif k == "components" and isinstance(v, dict):
                    merged["components"] = dict(v)
                else:
                    merged[k] = v
        known = {f.name for f in fields(cls)}
        unknown = set(merged) - known
        if unknown:
            raise ValueError(f"radiology reward config: unknown keys {sorted(unknown)}; known keys: {sorted(known)}")
        return cls(**merged)

    @classmethod
    def from_trainer_config(cls, config: Any, **overrides: Any) -> "RadiologyRewardConfig":
        """Read ``config.reward.reward_kwargs`` (absent -> defaults), then apply ``overrides``."""
        kwargs = None
        try:
            reward = config.get("reward") if hasattr(config, "get") else getattr(config, "reward", None)
            if reward is not None:
                kwargs = (
                    reward.get("reward_kwargs") if hasattr(reward, "get") else getattr(reward, "reward_kwargs", None)
                )
        except Exception:  # noqa: BLE001 - a config without reward.reward_kwargs simply has no settings
            kwargs = None
        return cls.from_any(kwargs, overrides or None)

    def scorer_config(self) -> ClinicalScorerConfig:
        return ClinicalScorerConfig(
            models=self.models,
            device=self.device,
            ner_batch_size=self.ner_batch_size,
            embed_batch_size=self.embed_batch_size,
            chexbert_batch_size=self.chexbert_batch_size,
            radgraph_batch_size=self.radgraph_batch_size,
            cache_mb=self.cache_mb,
            embedding_cache_mb=self.embedding_cache_mb,
            rate_affinity=self.rate_affinity,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["models"] = self.models.to_dict()
        return d


def _to_plain(src: Any) -> dict:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(src, DictConfig):
            return OmegaConf.to_container(src, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(src, RadiologyRewardConfig):
        return src.to_dict()
    return dict(src)
