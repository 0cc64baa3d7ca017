"""Configuration of the EditGRPO edit step in verl's rollout: the ``editgrpo`` top-level Hydra key.

Every field is optional; set them on the command line with a ``+`` (the key is not in verl's ``ppo_trainer.yaml``)::

    +actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ
    actor_rollout_ref.rollout.n=10            # G: the whole group, sampled + edited
    actor_rollout_ref.rollout.calculate_log_probs=False
    +editgrpo.scheme=paper +editgrpo.tau=0.6 +editgrpo.max_ops=1
    +editgrpo.analyzer=rate +editgrpo.models.rate_ner=/models/RaTE-NER-Deberta \
    +editgrpo.models.biolord=/models/BioLORD-2023-C

or in a YAML that extends ``ppo_trainer`` (``editgrpo: {scheme: paper, ...}``, no ``+``).

Why a top-level key: verl turns ``actor_rollout_ref.rollout`` into its ``RolloutConfig`` dataclass, which rejects
unknown keys; a top-level key reaches every agent-loop worker untouched (they receive the whole trainer config), as
``ditpo.*`` does for the trainer.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Optional

__all__ = ["ANALYZERS", "EditRolloutConfig", "GROUP_SCHEMES", "LEVELS", "GroupPlan", "plan_group"]

#: How a group of G = ``rollout.n`` responses is assembled.
GROUP_SCHEMES = ("paper", "overwrite", "none")
#: Edit granularity: the paper's sentence-level rules, or its paragraph-level ablation (whole reference report).
LEVELS = ("sentence", "paragraph")
#: Analyzer names (``verl_ext.clinical``) the sentence-level edit can use.
ANALYZERS = ("rate", "radgraph", "lexicon")


@dataclass
class EditRolloutConfig:
    """The ``editgrpo`` key. Defaults reproduce the paper (Sec. 2, App. E) unless a field says otherwise."""

    scheme: str = "paper"
    """How each training group of G = ``actor_rollout_ref.rollout.n`` responses is built:

    * ``paper`` (paper Sec. 2: "samples G/2 responses o_i, and fills the other half of the batch with edited
      versions o'_i of these"): sample G - E responses, add E edited copies of the first E of them
      (E = ``num_edits``, G//2 by default). Nothing sampled is thrown away.
    * ``overwrite`` (the authors' released code, editgrpo_reference.md §2.2): sample G, shuffle, pair the first G//2
      (sources) with the next G//2 (targets) and overwrite each target with its source's edit when the edit changed
      the text. The overwritten samples are discarded.
    * ``none``: plain GRPO / Dr. GRPO through the same code path (sample G, no analyzer is loaded).
    Validation always samples plainly (``rollout.val_kwargs.n``)."""

    level: str = "sentence"
    """``sentence``: the paper's editing rules (``verl_ext.editing.edit_report``). ``paragraph``: the paper's
    "EditGRPO (para)" ablation (Table 1): the whole response is replaced by the reference report
    (``verl_ext.editing.paragraph_edit``), for ``num_edits`` (default 1: "limited to one batch element per query")
    responses per group."""

    num_edits: Optional[int] = None
    """Edited copies per group. None: G//2 for ``level=sentence`` (paper), 1 for ``level=paragraph``."""

    on_unchanged: str = "resample"
    """``paper`` scheme only: what fills an edit slot whose edit changed nothing (the response already agrees with
    the reference). ``resample``: sample one more response (plain, not edited), as the authors' target slot keeps its
    own sample. ``duplicate``: a copy of the source response, flagged ``is_edited=False``; no extra generation, but
    that response counts twice in the group baseline."""

    tau: float = 0.6
    """Cosine similarity threshold of the editing rules (paper App. E: tau = 0.6)."""

    max_ops: int = 1
    """Editing operations per response (authors' release: ``extractor_num_ops_per_para=1``)."""

    matching: Optional[str] = None
    """``embedding`` or ``exact`` entity matching; None: ``exact`` for the radgraph analyzer (its entities have no
    embeddings), ``embedding`` otherwise."""

    edit_options: dict = field(default_factory=dict)
    """Further ``verl_ext.editing.EditConfig`` fields (e.g. ``conflict_requires_spurious``, ``count_anatomy``,
    ``separator``), passed through unchanged."""

    analyzer: str = "rate"
    """Which analyzer finds sentences and entities: ``rate`` (RaTE-NER + BioLORD, the paper's), ``radgraph`` (the
    paper's RadGraph variant, Table 2/4), ``lexicon`` (a small offline rule-based analyzer for demos and tests), or
    any ``verl_ext.editing.ReportAnalyzer`` class as ``<module file or pkg://module>:<ClassName>`` (loaded with
    verl's ``load_extern_object`` and built with ``analyzer_options`` as keyword arguments)."""

    models: dict = field(default_factory=dict)
    """Local model locations, as ``verl_ext.clinical.models.ModelPaths`` keys: ``rate_ner``, ``biolord``
    (rate); ``radgraph_cache``, ``radgraph_model_type`` (radgraph). Never hub ids."""

    analyzer_options: dict = field(default_factory=dict)
    """Extra keyword arguments for the analyzer: ``RateAnalyzer`` (e.g. ``ner_batch_size``), ``RadGraphAnnotator``,
    or the ``LexiconAnalyzerConfig`` fields (e.g. ``model_dir``, ``lexicon_path``, ``cpu_threads``)."""

    device: str = "auto"
    """Device of the analyzer models in the process that hosts them: ``auto``, ``cpu``, ``cuda[:i]``. Inside Ray only
    a GPU that Ray assigned to that process counts (``verl_ext.clinical.models.resolve_device``): with ``service``
    ``actor``, ``auto`` is the node actor's device (its reserved GPU share, or CPU)."""

    service: str = "auto"
    """Where the analyzer is loaded. ``actor``: once per node, inside the per-node actor that also hosts the reward's
    scorer (``verl_ext.node_actor``; its placement settings ``reward.reward_kwargs.actor_*`` apply), which every
    agent-loop worker of the node calls; a ``rate`` analyzer with the reward's RaTE-NER/BioLORD paths then uses the
    reward's own loaded models. ``local``: in each agent-loop worker process (8 copies per node by default; on CPU,
    as verl's workers get no GPU). ``auto``: ``actor`` inside Ray, else ``local``."""

    analysis_batch_size: int = 256
    """At most this many texts per analyzer call. Concurrent prompts of one worker are batched together."""

    analysis_wait_ms: float = 5.0
    """How long the analysis batcher waits for more texts from concurrent prompts before it runs a batch."""

    keep_analysis: bool = False
    """Keep ``extra_fields["edit_analysis"]`` in TransferQueue after the reward has been computed. The reward manager
    reads it during scoring either way; by default it is dropped afterwards, because entity embeddings are large
    (768 floats per entity) and nothing downstream of the reward reads them."""

    max_failed_edit_share: float = 0.1
    """Stop the run when more than this share of a step's training groups fail to edit (``edit_error``: the analyzer
    raised, its output did not match its input, splicing or finalising an edit failed). A failed group still trains
    on its sampled responses, so a broken analyzer (e.g. a wrong model path) would otherwise train plain GRPO at
    twice the generation cost with only a metric showing it. Checked before each dispatch (in the synchronous trainer:
    the whole previous step)."""

    max_truncated_share: float = 0.5
    """Stop the run when in more than this share of a step's training groups every edit source was skipped because
    it ended without an end-of-turn token (``edit_skipped="truncated"``). Skips are not failures, but if the rollout
    backend drops the end-of-turn token from the response ids (a stop setting), every source looks truncated, no
    group gets an edit and the run trains as Dr. GRPO without an error. A share above 0.5 ("most groups") is always
    logged as a warning with the cause. Checked with the failure share, before each dispatch."""

    stop_on_edit_failures: bool = True
    """False: log the failure share and the truncation share and keep training instead of stopping."""

    seed: int = 1
    """Seed of the edit randomness. Each group draws from ``random.Random`` seeded by (seed, global step, dataset
    index of the prompt, and the uid if the prompt has no index)."""

    # ------------------------------------------------------------------------------------------------------------

    def __post_init__(self) -> None:
        if self.scheme not in GROUP_SCHEMES:
            raise ValueError(f"editgrpo.scheme={self.scheme!r}: expected one of {GROUP_SCHEMES}")
        if self.level not in LEVELS:
            raise ValueError(f"editgrpo.level={self.level!r}: expected one of {LEVELS}")
        if self.on_unchanged not in ("resample", "duplicate"):
            raise ValueError(f"editgrpo.on_unchanged={self.on_unchanged!r}: expected 'resample' or 'duplicate'")
        if self.analyzer not in ANALYZERS and ":" not in self.analyzer.replace("://", ""):
            raise ValueError(
                f"editgrpo.analyzer={self.analyzer!r}: expected one of {ANALYZERS} or '<module path>:<ClassName>'"
            )
        if self.service not in ("auto", "local", "actor"):
            raise ValueError(f"editgrpo.service={self.service!r}: expected 'auto', 'local' or 'actor'")
        if self.num_edits is not None and self.num_edits < 0:
            raise ValueError(f"editgrpo.num_edits={self.num_edits} must be >= 0")
        if self.matching is not None and self.matching not in ("embedding", "exact"):
            raise ValueError(f"editgrpo.matching={self.matching!r}: expected 'embedding', 'exact' or null")
        if not (0.0 < float(self.tau) < 1.0):
            raise ValueError(f"editgrpo.tau={self.tau} must lie in the open interval (0, 1) (paper: 0.6)")
        if not (0.0 <= float(self.max_failed_edit_share) <= 1.0):
            raise ValueError(f"editgrpo.max_failed_edit_share={self.max_failed_edit_share} must lie in [0, 1]")
        if not (0.0 <= float(self.max_truncated_share) <= 1.0):
            raise ValueError(f"editgrpo.max_truncated_share={self.max_truncated_share} must lie in [0, 1]")
        self.edit_options = dict(self.edit_options or {})
        self.models = dict(self.models or {})
        self.analyzer_options = dict(self.analyzer_options or {})

    @property
    def edits_enabled(self) -> bool:
        return self.scheme != "none"

    @property
    def needs_analyzer(self) -> bool:
        return self.edits_enabled and self.level == "sentence"

    def edits_per_group(self, n: int) -> int:
        """E, the number of edited copies in a group of ``n``."""
        if not self.edits_enabled or n < 2:
            return 0
        e = self.num_edits if self.num_edits is not None else (n // 2 if self.level == "sentence" else 1)
        return max(0, min(int(e), n // 2))

    def edit_config(self):
        """The ``verl_ext.editing.EditConfig`` of the rules."""
        from verl_ext.editing import EditConfig

        matching = self.matching or ("exact" if self.analyzer == "radgraph" else "embedding")
        return EditConfig(tau=float(self.tau), max_ops=int(self.max_ops), matching=matching, **self.edit_options)

    @classmethod
    def from_mapping(cls, data: Optional[Mapping[str, Any]]) -> "EditRolloutConfig":
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"editgrpo: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_trainer_config(cls, config) -> "EditRolloutConfig":
        """Read the ``editgrpo`` key of a verl trainer config (OmegaConf or dict); absent -> defaults."""
        section = config.get("editgrpo", None) if hasattr(config, "get") else None
        if section is None:
            return cls()
        try:
            from omegaconf import OmegaConf

            if OmegaConf.is_config(section):
                section = OmegaConf.to_container(section, resolve=True)
        except ImportError:  # pragma: no cover - omegaconf ships with verl
            pass
        return cls.from_mapping(section)


@dataclass(frozen=True)
class GroupPlan:
    """Which sessions of a group are sampled and which become edited copies.

    ``sampled``: session ids generated by the policy. ``pairs``: (source session, target session): the target is
    the source's edited copy. With the ``paper`` scheme the targets are extra sessions; with ``overwrite`` they are
    sampled sessions whose samples an edit may replace.
    """

    n: int
    sampled: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]


def plan_group(cfg: EditRolloutConfig, n: int, rng) -> GroupPlan:
    """Assign the ``n`` sessions of one group (see ``EditRolloutConfig.scheme``)."""
    e = cfg.edits_per_group(n)
    if e == 0:
        return GroupPlan(n, tuple(range(n)), ())
    if cfg.scheme == "paper":
        s = n - e
        # Sessions 0..s-1 are sampled; session s+k is the edit of session k (paragraph level: of a random source).
        sources = list(range(e)) if cfg.level == "sentence" else sorted(rng.sample(range(s), e))
        return GroupPlan(n, tuple(range(s)), tuple((src, s + k) for k, src in enumerate(sources)))
    # overwrite: the authors' shuffle; the first n//2 are sources, the next n//2 targets (odd n: one left alone).
    order = list(range(n))
    rng.shuffle(order)
    if cfg.level == "paragraph":
        # force_gt: overwrite e random members with the reference (the "source" is the member itself).
        return GroupPlan(n, tuple(range(n)), tuple((t, t) for t in sorted(order[:e])))
    return GroupPlan(n, tuple(range(n)), tuple((order[k], order[e + k]) for k in range(e)))
