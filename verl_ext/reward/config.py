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

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from verl_ext.clinical.models import ModelPaths
from verl_ext.clinical.scorer import ClinicalScorerConfig
from verl_ext.node_actor import NodeActorConfig

#: The paper's reward (App. D): R = RadGraph-F1 + CheXbert-Micro-F1-14 + RaTE, unweighted.
PAPER_COMPONENTS: dict[str, float] = {"radgraph_f1": 1.0, "chexbert_micro_f1_14": 1.0, "ratescore": 1.0}

#: Units of ``component_schedules``' starts: training steps or shares of the run.
SCHEDULE_UNITS = ("step", "share")


@dataclass
class RadiologyRewardConfig:
    components: dict[str, float] = field(default_factory=lambda: dict(PAPER_COMPONENTS))
    """Component name -> weight; the reward is the weighted sum. Names: see ``verl_ext.reward.components``
    (radgraph_f1, chexbert_micro_f1_14, ratescore, chexbert_inverse_frequency, bleu2, or any registered one).
    Default: the paper's unweighted sum (App. D)."""

    models: ModelPaths = field(default_factory=ModelPaths)
    """Local model locations (``verl_ext.clinical.models.ModelPaths``); only the ones the components need."""

    device: str = "auto"
    """Where the scorer models run: "auto" (inside Ray: the GPU Ray assigned to the node actor, else CPU; outside
    Ray: cuda when visible), "cpu", "cuda[:i]" (``verl_ext.clinical.models.resolve_device``)."""

    service: str = "auto"
    """"local": models in each reward-loop worker process, requests batched per process. "actor": one shared Ray
    actor per node holds the models and batches the requests of all reward workers on that node. "auto": "actor"
    inside a Ray worker, else "local". See ``verl_ext.reward.service`` and ``verl_ext.node_actor``."""

    actor_placement: str = "auto"
    """Where the per-node actor (the reward's scorer and the edit step's analyzer) runs; see
    ``verl_ext.node_actor``. "pool": inside a bundle of verl's colocated GPU pool on this node, with a fraction
    ``actor_num_gpus`` of that bundle's GPU (Ray accounts for it; verl's worker groups use 1/3 of each bundle).
    "node": on this node outside any placement group, with ``actor_num_gpus`` GPUs that the training pool leaves
    free (0: CPU). "auto": "pool" when verl's pool has a GPU bundle on this node, else "node"."""
    actor_num_gpus: Optional[float] = None
    """Ray GPUs reserved by the node actor. None: 0.2 with placement "pool", 0 (CPU) with "node"."""
    actor_num_cpus: float = 1.0
    """Ray CPUs reserved by the node actor with placement "node" (in a pool bundle it reserves none: the bundle's
    CPUs belong to verl's workers). On CPU, give it what the scoring should use, e.g. 8."""
    actor_cpu_threads: Optional[int] = None
    """torch intra-op threads of the node actor (Ray starts workers with OMP_NUM_THREADS=1). None:
    ``actor_num_cpus`` (at least 1)."""
    actor_pool_name: str = "global_pool"
    """Name prefix of verl's colocated resource pool placement groups (verl 0.9.1: "global_pool")."""
    actor_start_timeout_s: float = 300.0
    """How long creating the node actor may wait for Ray to schedule it before the run fails (instead of hanging
    on an actor that can never be placed)."""
    actor_call_timeout_s: float = 1800.0
    """How long one call to the node actor (a scoring request, an analysis batch, loading the models) may take
    before it fails with a clear error."""

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
    rate_affinity: str = "0.5.0"
    """RaTEScore weight set (``verl_ext.clinical.rate.WEIGHT_SETS`` or a JSON path). Default "0.5.0": the release the
    paper names for the reward (App. D footnote 3, RaTEScore 0.5.0, also the authors' reward environment), whose
    negation weight is 0.3612; "long" is RaTEScore 0.6.0's default (negation weight 0.8717)."""
    ratescore_no_entity: float = 0.5
    """The ratescore component of a non-empty response without any RaTE entity. 0.5: what RaTEScore 0.5.0 and 0.6.0
    score when a side has no entity (``compute_score``), hence the paper's reward. 0.0: such a response earns
    nothing (this project's default before issue 21). An empty response scores 0 on every component either way (the
    package drops it and misaligns the batch instead; ``verl_ext.clinical.rate``), and a reference without entities
    makes the pair invalid (counted) where the package would give every response of the group 0.5."""

    radgraph_level: str = "partial"
    """RadGraph reward level: "partial" (RG_ER, the paper's "RadGraph F1"), "simple" or "complete"."""
    radgraph_lowercase: bool = False
    """Compare RadGraph entity tokens lower-cased (the upstream fix after radgraph 0.1.18; "Effusion" matches
    "effusion"). Default False: the released packages compare them case-sensitively, radgraph 0.1.2 (the version
    the paper names, App. D footnote 1) and 0.1.18 (installed) alike: their ``rewards.py`` and radgraph-xl
    preprocessing are identical (sdists diffed)."""
    chexbert_uncertain: str = "positive"
    """How CheXbert's "uncertain" counts: "positive" (the paper/authors' convention) or "negative"."""
    class_frequencies: Optional[str] = None
    """JSON of training-set CheXbert positive rates (``python -m verl_ext.reward.class_frequencies``); required by
    the chexbert_inverse_frequency component."""
    bleu_n: int = 2
    """n of the BLEU component (DEER uses BLEU-2)."""
    facts_beta: float = 2.0
    """beta of the FactS components' F_beta (OraPO: beta > 1; 2 is our choice, verl_ext.reward.facts)."""
    facts_neutral_as_fp: bool = False
    """Count FactS facts that no CheXpert label concerns as false positives."""
    facts_model: Optional[str] = None
    """Local instruction-model directory of the facts_llm component (vLLM)."""

    component_schedules: dict[str, list] = field(default_factory=dict)
    """Step-dependent weights: component -> ``[[from, weight], ...]`` (piecewise constant; before the first entry
    the weight in ``components`` holds); ``from`` is a training step or a share of the run (``schedule_unit``).
    DEER's two-phase reward (Sec. 3.1 / 4): ``{bleu2: [[0, 0.0], [0.5, 0.25]]}`` with ``schedule_unit=share`` =
    F1 only, then F1 + 0.25 BLEU-2 over the second half of the run (the paper gives no switch point)."""
    schedule_unit: str = "step"
    """Unit of ``component_schedules``' ``from``: "step" (a training step, 1-based as verl counts) or "share" (a
    share in [0, 1) of the run's total steps, so every phase happens for any data size; entry ``s > 0`` starts at
    step ``floor(s * total) + 1``)."""
    total_training_steps: Optional[int] = None
    """The run's total steps; read from ``trainer.total_training_steps`` (the editgrpo trainer fills it in from the
    data loader before the reward is built). Needed by ``schedule_unit=share``."""

    token_weights: str = "none"
    """"chexbert_gradient": also compute DEER's gradient-based DiTPO token weights (Eq. 9-12) for each response
    and pass them to the trainer through the per-token channel (``verl_ext.reward.token_weights``). Set from
    ``ditpo.weighting=gradient`` by `from_trainer_config`."""
    ditpo_beta: float = 1.0
    """beta of Eq. 12 (DEER Sec. 4: 1)."""
    ditpo_uncertain: str = "negative"
    """How the reference's CheXbert "uncertain" counts for DiTPO's target set T (Eq. 9): "negative" (DEER: T is
    the reference's positive conditions, class 1, as its F1 reward, PromptMRG's ``label == 1``, and the recipes
    always used) or "positive". Separate from ``chexbert_uncertain``, which the other CheXbert components read
    (EditGRPO's convention: uncertain counts as positive)."""
    ditpo_logit_classes: str = "positive"
    """Eq. 9's target: "positive" logits (the formula) or "positive_uncertain" (the sentence around it)."""
    saliency_batch_size: int = 32
    """Responses per CheXbert forward+backward of the saliency."""

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
        if self.ditpo_uncertain not in ("positive", "negative"):
            raise ValueError(f"ditpo_uncertain={self.ditpo_uncertain!r}: expected 'positive' or 'negative'")
        self.node_actor()  # validates the actor_* settings
        from verl_ext.clinical.chexbert_saliency import LOGIT_CLASSES
        from verl_ext.reward.token_weights import TOKEN_WEIGHTS

        if self.token_weights not in TOKEN_WEIGHTS:
            raise ValueError(f"token_weights={self.token_weights!r}: expected one of {TOKEN_WEIGHTS}")
        if self.ditpo_logit_classes not in LOGIT_CLASSES:
            raise ValueError(f"ditpo_logit_classes={self.ditpo_logit_classes!r}: expected one of {LOGIT_CLASSES}")
        if self.schedule_unit not in SCHEDULE_UNITS:
            raise ValueError(f"schedule_unit={self.schedule_unit!r}: expected one of {SCHEDULE_UNITS}")
        self.component_schedules = {
            str(k): _parse_schedule(k, v, self.schedule_unit) for k, v in dict(self.component_schedules).items()
        }
        unknown = set(self.component_schedules) - set(self.components)
        if unknown:
            raise ValueError(f"component_schedules names {sorted(unknown)}, which are not in components")
        from verl_ext.clinical.rate import WEIGHT_SETS

        if self.rate_affinity not in WEIGHT_SETS and not str(self.rate_affinity).endswith(".json"):
            raise ValueError(f"rate_affinity={self.rate_affinity!r}: expected one of {WEIGHT_SETS} or a JSON path")
        if not 0.0 <= float(self.ratescore_no_entity) <= 1.0:
            raise ValueError(f"ratescore_no_entity={self.ratescore_no_entity} must lie in [0, 1] (RaTEScore: 0.5)")
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
        derived = {}
        try:
            ditpo = config.get("ditpo") if hasattr(config, "get") else getattr(config, "ditpo", None)
        except Exception:  # noqa: BLE001 - no ditpo block: no token weights
            ditpo = None
        if ditpo is not None and ditpo.get("weighting", "none") == "gradient":
            derived = {"token_weights": "chexbert_gradient", "ditpo_beta": float(ditpo.get("beta", 1.0))}
        from verl_ext.config.access import config_get

        total = config_get(config, "trainer.total_training_steps")
        if total is not None:
            derived["total_training_steps"] = int(total)
        return cls.from_any(derived or None, kwargs, overrides or None)

    def schedule_steps(self, name: str, total_steps: Optional[int] = None) -> list[tuple[int, float]]:
        """``component_schedules[name]`` with each ``from`` as a training step (shares resolved against
        ``total_steps``, default ``total_training_steps``)."""
        entries = self.component_schedules.get(name, [])
        if self.schedule_unit == "step" or not entries:
            return [(int(start), weight) for start, weight in entries]
        total = self.total_training_steps if total_steps is None else total_steps
        if total is None:
            raise ValueError(
                "reward.reward_kwargs.schedule_unit=share needs the run's total steps (trainer.total_training_steps); "
                "the editgrpo trainer sets it from the data loader, elsewhere set it explicitly")
        return [(0 if share == 0 else math.floor(share * int(total)) + 1, weight) for share, weight in entries]

    def schedule_problems(self, total_steps: int) -> list[str]:
        """One line per schedule entry that a run of ``total_steps`` steps never reaches (empty: none)."""
        problems = []
        for name in self.component_schedules:
            for start, weight in self.schedule_steps(name, total_steps):
                if start > total_steps:
                    problems.append(
                        f"reward.reward_kwargs.component_schedules.{name} starts its phase with weight {weight:g} at "
                        f"step {start}, but the run has at most {total_steps} steps, so that phase never happens; "
                        "give the switch as a share of the run (reward.reward_kwargs.schedule_unit=share, e.g. "
                        "DEER_BLEU_SWITCH=0.5 in the DEER recipes) or an earlier step")
        return problems

    def weight_at(self, name: str, step: Optional[int]) -> float:
        """The weight of component ``name`` at training step ``step`` (``None``: no step known, the base weight)."""
        weight = self.components[name]
        if step is None:
            return weight
        for from_step, value in self.schedule_steps(name):
            if step >= from_step:
                weight = value
        return weight

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

    def node_actor(self) -> NodeActorConfig:
        """The ``actor_*`` settings: placement, resources and timeouts of the node's actor, which hosts the reward's
        models and the edit step's analyzer."""
        return NodeActorConfig(
            placement=self.actor_placement,
            num_gpus=self.actor_num_gpus,
            num_cpus=self.actor_num_cpus,
            cpu_threads=self.actor_cpu_threads,
            pool_name=self.actor_pool_name,
            start_timeout_s=self.actor_start_timeout_s,
            call_timeout_s=self.actor_call_timeout_s,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["models"] = self.models.to_dict()
        return d


def _parse_schedule(name: str, value: Any, unit: str) -> list[tuple[float, float]]:
    try:
        entries = sorted((float(start), float(weight)) for start, weight in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"component_schedules.{name}={value!r}: expected [[from_{unit}, weight], ...]") from exc
    if unit == "step":
        if any(start != int(start) for start, _ in entries):
            raise ValueError(f"component_schedules.{name}={value!r}: a start that is not a whole step; for a share of "
                             "the run set reward.reward_kwargs.schedule_unit=share")
        entries = [(int(start), weight) for start, weight in entries]
    if unit == "share" and any(not 0 <= start < 1 for start, _ in entries):
        raise ValueError(f"component_schedules.{name}={value!r} with schedule_unit=share: each start must be a "
                         "share of the run in [0, 1) (1 or more would never be reached)")
    return entries


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
