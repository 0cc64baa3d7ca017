"""EditGRPO's post-rollout edit step as a verl agent-loop manager/worker for the V1 (TransferQueue) trainer.

Select it with::

    +actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ
    actor_rollout_ref.rollout.n=G  actor_rollout_ref.rollout.calculate_log_probs=False  +editgrpo.scheme=paper ...

How a training prompt's group of G = ``rollout.n`` trajectories is built (``EditAgentLoopWorker._run_prompt``; the
``editgrpo`` key is documented in ``verl_ext.rollout.config``):

1. sample the planned sessions with verl's own ``_run_agent_loop`` (the registered agent loop, e.g.
   ``single_turn_agent``, talking to the rollout servers), **without** post-processing them yet: a context variable
   set in the sampling task makes our ``_agent_loop_postprocess`` hand the raw ``AgentLoopOutput`` back;
2. decode the sources' responses with exact token offsets (``verl_ext.rollout.splice.decode_response``), analyse
   them and the reference report (``reward_model.ground_truth``) in one batched analyzer call, and run the editing
   rules (``verl_ext.editing.edit_reports``; the paragraph ablation uses ``paragraph_edit``);
3. splice each edit into token ids (``splice_pieces``): kept sentences keep the sampled ids, only inserted text is
   encoded, the edit ends with the model's end-of-turn token; an edit that would not fit in
   ``rollout.response_length`` (or changed nothing) fills its slot per ``editgrpo.on_unchanged``;
4. hand every one of the G trajectories to verl's own post-processing (``AgentLoopWorkerTQ._agent_loop_postprocess``:
   multimodal inputs, Qwen2.5-VL 4-row mrope position ids, the streaming reward through the reward-loop workers, the
   TransferQueue write), so nothing downstream is special-cased; old log-probs of edited copies are recomputed by the
   actor like everyone else's.

Each trajectory's ``extra_fields`` carry (the reward manager sees them merged into ``extra_info``; the ``editgrpo``
trainer reads them for metrics):

* ``is_edited`` (bool), ``edit_ops`` (list of op kinds), ``edit_tokens_inserted`` / ``edit_tokens_kept`` (int),
  ``edit_source_session`` (int, -1 for sampled), ``edit_sentences`` (``[{"kind", "gen_index", "ref_index"}]``: the
  sentences each op touched), ``edit_kept_runs`` (``[[src_start, src_end, dst_start]]``: the source's sampled token
  ids ``[src_start, src_end)`` sit unchanged at ``dst_start`` of the edited response), ``edit_truncated`` (bool,
  always False: edits that would exceed ``rollout.response_length`` are dropped), ``edit_time_s`` (float, edited
  copies: analysis + rules + splice time of the group);
* ``edit_analysis``: the response's ``ReportAnalysis.to_dict()`` (sampled sources and edited copies; sentence level
  only) so the reward can reuse it. Dropped after scoring unless ``editgrpo.keep_analysis``.
* ``edit_error`` (str, "<stage>: <exception>") when an edit failed: analysing a text (isolated to the group, or to
  the one source, whose text failed: batched calls are retried text by text), an analysis that does not match its
  text, splicing, resampling the slot, or finalising the edited copy. Only the edit is lost: the sampled responses
  always train, the slot is filled like an unchanged edit (a copy of the source, ``edit_duplicate``, when resampling
  or finalising failed), and the traceback is logged. More than ``editgrpo.max_failed_edit_share`` failed groups in a
  step stop the run at the next dispatch (``check_edit_failures``);
* ``edit_skipped="truncated"`` on a source without an end-of-turn token (it ran into ``rollout.response_length``):
  it is not edited (see ``_edit_group``). A skip is not a failure, but a step where more than
  ``editgrpo.max_truncated_share`` of the groups got no edit for this reason stops the run the same way (a backend
  that drops the end-of-turn token would otherwise turn EditGRPO into Dr. GRPO silently); above half, a warning.

Validation prompts go through verl's stock ``AgentLoopWorkerTQ._run_prompt`` (plain sampling, ``val_kwargs.n``).

Ray note (verl_integration.md §5.2): ``EditAgentLoopWorker`` subclasses the *plain* ``AgentLoopWorker`` and borrows
``AgentLoopWorkerTQ``'s methods by reference. Subclassing ``AgentLoopWorkerTQ.__ray_actor_class__`` would make
cloudpickle ship verl's undecorated class by value and break its zero-argument ``super()`` in the actor.
"""
from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import os
import random
import time
from typing import Any, Optional

import ray
import transfer_queue as tq

from verl.experimental.agent_loop import AgentLoopOutput, AgentLoopWorker
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ, apply_greedy_sampling_params

from verl_ext.rollout.analysis import AnalysisBatcher, get_analyzer, prepare_analyzer
from verl_ext.rollout.config import EditRolloutConfig, GroupPlan, plan_group
from verl_ext.rollout.splice import decode_response, splice_pieces, stop_token_ids

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

__all__ = ["EditAgentLoopManagerTQ", "EditAgentLoopWorker", "check_edit_failures", "validate_edit_setup"]

_TQ_WORKER = AgentLoopWorkerTQ.__ray_actor_class__
# Set while a session is sampled for the edit step: verl's `_run_agent_loop` then returns the raw AgentLoopOutput
# instead of post-processing it (post-processing happens once the whole group, edits included, is assembled).
_DEFER_POSTPROCESS: contextvars.ContextVar[bool] = contextvars.ContextVar("verl_ext_defer_postprocess", default=False)


def validate_edit_setup(config) -> EditRolloutConfig:
    """Check the trainer config for settings the edit step cannot honour; returns the parsed ``editgrpo`` key."""
    cfg = EditRolloutConfig.from_trainer_config(config)
    if not cfg.edits_enabled:
        return cfg
    cfg.edit_config()  # the rules' settings (editgrpo.edit_options) fail here, before any model loads
    rollout = config.actor_rollout_ref.rollout
    problems = []
    if rollout.get("calculate_log_probs", False):
        problems.append(
            "actor_rollout_ref.rollout.calculate_log_probs=True: edited copies have no behaviour-policy log-probs "
            "(their tokens were not sampled), so TransferQueue's rollout_log_probs would be missing or fake for them. "
            "Set actor_rollout_ref.rollout.calculate_log_probs=False (old log-probs are recomputed by the actor)."
        )
    rc = config.get("algorithm", {}).get("rollout_correction", None) or {}
    if rc.get("bypass_mode", False):
        problems.append("algorithm.rollout_correction.bypass_mode=True uses rollout log-probs as old log-probs; "
                        "edited copies have none. Disable bypass mode.")
    n = int(rollout.n)
    if n < 2:
        problems.append(f"actor_rollout_ref.rollout.n={n}: a group needs at least 2 trajectories to hold an edit")
    if problems:
        raise ValueError("EditGRPO edit step (editgrpo.scheme=%s):\n  - %s" % (cfg.scheme, "\n  - ".join(problems)))
    return cfg


class EditAgentLoopWorker(AgentLoopWorker):
    """verl's TransferQueue agent-loop worker with the EditGRPO edit step (see the module docstring)."""

    def __init__(self, config, llm_client, teacher_client=None, reward_loop_worker_handles=None):
        AgentLoopWorker.__init__(self, config, llm_client, teacher_client, reward_loop_worker_handles)
        tq.init()
        self.background_tasks = set()
        self.edit_cfg = EditRolloutConfig.from_trainer_config(config)
        self.stop_ids = stop_token_ids(self.tokenizer, getattr(self.model_config, "generation_config", None))
        eos = self.tokenizer.eos_token_id
        self.end_of_turn_id = int(eos) if eos is not None and eos in self.stop_ids else self.stop_ids[0]
        self._batcher: Optional[AnalysisBatcher] = None
        # Checked and loaded before the first step; inside Ray it is the node's shared analyzer (rollout.analysis).
        self._analyzer = prepare_analyzer(self.edit_cfg, config) if self.edit_cfg.needs_analyzer else None
        self._edit_tally: dict[int, list[int]] = {}
        self._edit_config = self.edit_cfg.edit_config() if self.edit_cfg.edits_enabled else None

    # verl's TransferQueue behaviour, borrowed by reference (see the module docstring).
    generate_sequences = _TQ_WORKER.generate_sequences
    _stock_run_prompt = _TQ_WORKER._run_prompt

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        if _DEFER_POSTPROCESS.get():
            return output
        return await _TQ_WORKER._agent_loop_postprocess(self, output, validate, **kwargs)

    # ------------------------------------------------------------------------------------------------------------
    # group assembly
    # ------------------------------------------------------------------------------------------------------------

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        if trajectory["validate"]:
            return await self._stock_run_prompt(prompt, sampling_params, trajectory, trace=trace)

        uid, partition_id = prompt["uid"], "train"
        await tq.async_kv_put(key=uid, partition_id=partition_id, tag={"status": "running"})
        tasks: list[asyncio.Task] = []
        try:
            n = int(prompt.pop("__rollout_n__", self.rollout_config.n))
            do_sample = prompt.pop("__do_sample__", True)
            params = dict(sampling_params)
            if not do_sample:
                apply_greedy_sampling_params(params)
            agent_name = prompt.pop("agent_name", self.rollout_config.agent.default_agent_loop)
            rng = self._group_rng(prompt)
            plan = plan_group(self.edit_cfg, n, rng)

            def sample(session_id: int) -> asyncio.Task:
                task = asyncio.create_task(
                    self._sample(params, trajectory, trace, agent_name, session_id, prompt)
                )
                tasks.append(task)
                return task

            sampled_tasks = {sid: sample(sid) for sid in plan.sampled}
            await asyncio.gather(*sampled_tasks.values())
            outputs: dict[int, AgentLoopOutput] = {sid: t.result() for sid, t in sampled_tasks.items()}
            for out in outputs.values():
                _mark_sampled(out)

            final = dict(outputs)
            failed = False
            if plan.pairs:
                edits, failed = await self._edit_group(plan, outputs, prompt, rng)
                resample = []
                for (src, tgt), edited in zip(plan.pairs, edits):
                    if edited is not None:
                        final[tgt] = edited
                    elif tgt not in final:  # paper scheme: the slot still needs a trajectory
                        if self.edit_cfg.on_unchanged == "duplicate":
                            final[tgt] = _duplicate(outputs[src], src)
                        else:
                            resample.append((src, tgt))
                if resample:
                    extra = {tgt: sample(tgt) for _, tgt in resample}
                    await asyncio.gather(*extra.values(), return_exceptions=True)
                    for src, tgt in resample:
                        task = extra[tgt]
                        if task.exception() is None:
                            final[tgt] = _mark_sampled(task.result())
                        else:  # the sampled responses stay; the slot gets a copy of its source
                            failed = True
                            exc = task.exception()
                            _log_edit_error(uid, "resampling", exc)
                            final[tgt] = _duplicate(outputs[src], src, error=_describe_error("resampling", exc))

            missing = sorted(set(range(n)) - set(final))
            if missing:
                raise RuntimeError(f"edit step left sessions {missing} of uid={uid} without a trajectory")
            # every session settles before the terminal status (as verl's own _run_prompt), so no sibling writes
            # after the replay buffer clears a failed group
            results = await asyncio.gather(
                *(self._finalize_guarded(final[sid], sid, prompt, outputs) for sid in range(n)), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
            failed = failed or not all(results)
            if plan.pairs:
                truncated = all(outputs[src].extra_fields.get("edit_skipped") == "truncated" for src, _ in plan.pairs)
                self._count_group(prompt, failed, truncated)
            status = "finished"
        except Exception as exc:  # mirror AgentLoopWorkerTQ._run_prompt: the group is marked failed, never lost
            logger.exception(f"EditAgentLoopWorker: error in _run_prompt for uid={uid}: {exc}")
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            status = "failure"
        await tq.async_kv_put(key=uid, partition_id=partition_id, tag={"status": status})

    async def _sample(self, params, trajectory, trace, agent_name, session_id, prompt) -> AgentLoopOutput:
        """Run verl's agent loop for one session and return its raw output (post-processing deferred)."""
        _DEFER_POSTPROCESS.set(True)  # this coroutine runs in its own task, hence its own context copy
        output = await self._run_agent_loop(
            dict(params), trajectory=trajectory, trace=trace, agent_name=agent_name, session_id=session_id, **prompt
        )
        if not isinstance(output, AgentLoopOutput):
            raise TypeError(
                f"edit step: agent loop {agent_name!r} returned {type(output).__name__}; only single-output agent "
                "loops (AgentLoopOutput) can be edited"
            )
        return output

    async def _finalize_guarded(
        self, output: AgentLoopOutput, session_id: int, prompt: dict, outputs: dict[int, AgentLoopOutput]
    ) -> bool:
        """``_finalize``; an edited copy that cannot be finalised is replaced by a copy of its source (the edit is
        lost, counted and logged, the group keeps its size). Returns False when that happened."""
        src = int(output.extra_fields.get("edit_source_session", -1))
        if not output.extra_fields.get("is_edited") or src not in outputs:
            await self._finalize(output, session_id, prompt)
            return True
        try:
            await self._finalize(output, session_id, prompt)
            return True
        except Exception as exc:  # noqa: BLE001
            _log_edit_error(prompt.get("uid"), "finalising the edited copy", exc)
            error = _describe_error("finalising the edited copy", exc)
            outputs[src].extra_fields.setdefault("edit_error", error)
            await self._finalize(_duplicate(outputs[src], src, error=error), session_id, prompt)
            return False

    def _count_group(self, prompt: dict, failed: bool, truncated: bool) -> None:
        step = _plain(prompt.get("global_steps"))
        tally = self._edit_tally.setdefault(int(step) if isinstance(step, (int, float)) else -1, [0, 0, 0])
        tally[0] += 1
        tally[1] += int(bool(failed))
        tally[2] += int(bool(truncated))

    def pop_edit_tally(self) -> dict[int, list[int]]:
        """``{global step: [training groups with edit slots, groups whose edit failed, groups whose every edit source
        ended without an end-of-turn token]}`` since the last call (read by ``EditAgentLoopManagerTQ`` before each
        dispatch)."""
        tally, self._edit_tally = self._edit_tally, {}
        return tally

    async def _finalize(self, output: AgentLoopOutput, session_id: int, prompt: dict) -> None:
        """verl's TransferQueue post-processing (tokens -> tensors, mm inputs, mrope ids, reward, TQ write)."""
        kwargs = dict(prompt)
        kwargs["session_id"] = session_id
        if "edit_analysis" in output.extra_fields and not self.edit_cfg.keep_analysis:
            # Score first (verl's own streaming reward), then drop the bulky analysis before the TQ write; verl's
            # post-processing skips scoring when reward_score is already set.
            await self._compute_score([output], kwargs=kwargs)
            if output.reward_score is not None:
                output.extra_fields.pop("edit_analysis", None)
        await _TQ_WORKER._agent_loop_postprocess(self, output, False, **kwargs)

    def _group_rng(self, prompt: dict) -> random.Random:
        """``random.Random`` seeded by (editgrpo.seed, global step, dataset index). The uid is a fresh uuid4 per
        prompt and step, so it only stands in when the prompt has no dataset index."""
        index = _plain(prompt.get("index"))
        step = _plain(prompt.get("global_steps"))
        ident = index if index is not None else prompt.get("uid")
        digest = hashlib.sha256(f"{self.edit_cfg.seed}|{step}|{ident}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "little"))

    # ------------------------------------------------------------------------------------------------------------
    # the edit itself
    # ------------------------------------------------------------------------------------------------------------

    def _get_batcher(self) -> AnalysisBatcher:
        if self._batcher is None:
            cfg = self.edit_cfg
            self._batcher = AnalysisBatcher(
                lambda: self._analyzer if self._analyzer is not None else get_analyzer(cfg), max_batch=cfg.analysis_batch_size,
                wait_s=cfg.analysis_wait_ms / 1000.0,
            )
        return self._batcher

    async def _edit_group(
        self, plan: GroupPlan, outputs: dict[int, AgentLoopOutput], prompt: dict, rng: random.Random
    ) -> tuple[list[Optional[AgentLoopOutput]], bool]:
        """One edited AgentLoopOutput per plan pair (None where the edit changed nothing, was skipped or failed),
        and whether any edit of the group failed. Never raises: a failure loses only the edits it touches (recorded
        as ``edit_error`` on the source, logged); the sampled responses always stay.

        A source that ran into ``rollout.response_length`` without an end-of-turn token is not edited (its slot is
        filled like an unchanged edit; ``edit_skipped="truncated"`` on the source): it ends in a fragment, and an edit
        that deletes or shortens a sentence would put the end-of-turn token right after that fragment, teaching the
        policy to stop mid-sentence.
        """
        from verl_ext.editing import edit_reports, paragraph_edit

        start = time.perf_counter()
        cfg = self.edit_cfg
        uid = prompt.get("uid")
        edited: list[Optional[AgentLoopOutput]] = [None] * len(plan.pairs)
        failed = False

        def fail(sources_hit, stage: str, exc: BaseException) -> None:
            nonlocal failed
            failed = True
            _log_edit_error(uid, stage, exc)
            for sid in sources_hit:
                outputs[sid].extra_fields.setdefault("edit_error", _describe_error(stage, exc))

        all_sources = sorted({src for src, _ in plan.pairs})
        try:
            reference = _reference_text(prompt)
            decoded = {
                sid: decode_response(self.tokenizer, outputs[sid].response_ids, self.stop_ids) for sid in all_sources
            }
        except Exception as exc:  # noqa: BLE001
            fail(all_sources, "preparing the edit", exc)
            return edited, failed
        truncated = {sid for sid, d in decoded.items() if not d.terminator_ids}
        for sid in truncated:
            outputs[sid].extra_fields["edit_skipped"] = "truncated"
        sources = [sid for sid in all_sources if sid not in truncated]
        live = [k for k, (src, _) in enumerate(plan.pairs) if src not in truncated]
        pair_rngs = [random.Random(rng.getrandbits(64)) for _ in plan.pairs]
        if not live:
            return edited, failed

        gen_an: dict[int, Any] = {}
        ref_an = None
        results: dict[int, Any] = {}
        try:
            if cfg.level == "sentence":
                texts = [decoded[s].text for s in sources] + [reference]
                analyses = [
                    _round_trip(analysis, text)
                    for text, analysis in zip(texts, await self._get_batcher().analyze(texts, return_exceptions=True))
                ]
                ref_an = analyses[-1]
                if isinstance(ref_an, BaseException):
                    raise ref_an
                for sid, analysis in zip(sources, analyses[:-1]):
                    if isinstance(analysis, BaseException):
                        fail([sid], "analysing the response", analysis)
                    else:
                        gen_an[sid] = analysis
                live = [k for k in live if plan.pairs[k][0] in gen_an]
                out = edit_reports(
                    [gen_an[plan.pairs[k][0]] for k in live],
                    [ref_an] * len(live),
                    self._edit_config,
                    [pair_rngs[k] for k in live],
                )
                results = dict(zip(live, out))
                for sid, analysis in gen_an.items():
                    outputs[sid].extra_fields["edit_analysis"] = analysis.to_dict()
            else:
                results = {k: paragraph_edit(decoded[plan.pairs[k][0]].text, reference) for k in live}
        except Exception as exc:  # noqa: BLE001 - count-and-report: the group trains on plain samples this step
            fail(sources, "analysing and editing", exc)
            return edited, failed

        pieces_time = time.perf_counter() - start
        for k, result in results.items():
            src = plan.pairs[k][0]
            t0 = time.perf_counter()
            try:
                edited[k] = self._splice_edit(outputs[src], src, decoded[src], result, gen_an.get(src), ref_an,
                                              pieces_time + time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - only this edit is lost
                fail([src], "splicing the edit", exc)
        return edited, failed

    def _splice_edit(self, source, src, decoded, result, gen, ref, elapsed) -> Optional[AgentLoopOutput]:
        """The edited copy of ``source`` as token ids, or None (nothing changed, or the edit does not fit)."""
        if not result.changed:
            return None
        t0 = time.perf_counter()
        spliced = splice_pieces(
            self.tokenizer,
            decoded,
            result.merged_segments(),
            end_token_id=self.end_of_turn_id,
            max_length=self.rollout_config.response_length,
        )
        if spliced.truncated:
            # The edited report does not fit in rollout.response_length: a cut-off edit is no report, so the slot is
            # treated like an unchanged edit.
            logger.debug(f"edit of session {src} exceeds response_length; dropped")
            return None
        if list(spliced.response_ids) == list(source.response_ids):
            return None  # the text changed but not the tokens (cannot happen with byte-level BPE)
        analysis = None
        if self.edit_cfg.level == "sentence" and spliced.exact:
            analysis = _edited_analysis(result, gen, ref, spliced.text)
        return _edited_output(source, src, result, spliced, analysis, elapsed + time.perf_counter() - t0)


class EditAgentLoopManagerTQ(AgentLoopManagerTQ):
    """``AgentLoopManagerTQ`` whose workers run the EditGRPO edit step (``EditAgentLoopWorker``).

    Select with ``+actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ``.
    """

    def __init__(self, config, llm_client, teacher_client=None, reward_loop_worker_handles=None):
        self.edit_cfg = validate_edit_setup(config)
        super().__init__(config, llm_client, teacher_client, reward_loop_worker_handles)
        self.agent_loop_workers_class = ray.remote(EditAgentLoopWorker)

    def generate_sequences(self, prompts) -> None:
        """verl's dispatch, after checking the share of groups whose edit failed (``check_edit_failures``)."""
        if self.edit_cfg.edits_enabled:
            self._check_edit_failures()
        return super().generate_sequences(prompts)

    def _check_edit_failures(self, get=ray.get) -> None:
        total: dict[int, list[int]] = {}
        for tally in get([w.pop_edit_tally.remote() for w in self.agent_loop_workers]):
            for step, counts in tally.items():
                acc = total.setdefault(step, [0, 0, 0])
                for k, count in enumerate(counts):
                    acc[k] += count
        check_edit_failures(total, self.edit_cfg)


# ----------------------------------------------------------------------------------------------------------------
# helpers (pure)
# ----------------------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A Python scalar/str for tensors, numpy scalars and NonTensorData; None stays None."""
    if value is None:
        return None
    if hasattr(value, "data") and not hasattr(value, "shape"):
        value = value.data
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _reference_text(prompt: dict) -> str:
    reward_model = prompt.get("reward_model") or {}
    reference = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
    if reference is None:
        extra = prompt.get("extra_info") or {}
        reference = extra.get("reference") if isinstance(extra, dict) else None
    if not isinstance(reference, str):
        raise ValueError(
            "edit step: the prompt row has no reference report; put it in reward_model.ground_truth "
            f"(got reward_model={reward_model!r})"
        )
    return reference


def _describe_error(stage: str, exc: BaseException) -> str:
    return f"{stage}: {type(exc).__name__}: {exc}"


def _log_edit_error(uid: Any, stage: str, exc: BaseException) -> None:
    logger.error(
        f"edit step failed for uid={uid} ({stage}); the affected edits are lost, the sampled responses train",
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def _round_trip(analysis: Any, text: str) -> Any:
    """``analysis``, or the error to report in its place when it does not describe the very text it was given (kept
    sentences are spliced by character offsets into that text)."""
    if isinstance(analysis, BaseException):
        return analysis
    got = getattr(analysis, "text", None)
    if got == text:
        return analysis
    return ValueError(
        f"edit step: the analyzer's output does not match the text it was given (an analyzer must return exact "
        f"char spans of its unmodified input, without normalising it): got {got!r:.120} for {text!r:.120}"
    )


#: Past this share of a step's groups without any edit because every source lacked an end-of-turn token ("most
#: groups"), a warning names the cause even below ``editgrpo.max_truncated_share``.
TRUNCATED_WARN_SHARE = 0.5


def check_edit_failures(tally: dict, cfg: EditRolloutConfig) -> None:
    """Raise when more than ``editgrpo.max_failed_edit_share`` of a step's groups failed to edit, or more than
    ``editgrpo.max_truncated_share`` got no edit because every source ended without an end-of-turn token (see the
    fields); with ``stop_on_edit_failures=False`` only log it. ``tally``: ``{step: [groups, failed groups, truncated
    groups]}``."""
    for step, (groups, failed, truncated) in sorted(tally.items()):
        if not groups:
            continue
        if failed / groups > cfg.max_failed_edit_share:
            _stop_or_warn(cfg, (
                f"EditGRPO edit step: {failed} of {groups} groups of step {step} failed to edit ({failed / groups:.0%} "
                f"> editgrpo.max_failed_edit_share={cfg.max_failed_edit_share}); those groups trained on plain "
                f"samples. Their extra_fields['edit_error'] and the agent-loop worker logs give the cause (e.g. a "
                f"wrong editgrpo.models path). Set +editgrpo.stop_on_edit_failures=False to keep training anyway."
            ), True)
        share = truncated / groups
        if share > min(cfg.max_truncated_share, TRUNCATED_WARN_SHARE):
            _stop_or_warn(cfg, (
                f"EditGRPO edit step: in {truncated} of {groups} groups of step {step} ({share:.0%}) every edit source "
                f"ended without an end-of-turn token (edit_skipped='truncated'), so those groups got no edit and "
                f"trained as Dr. GRPO. Either the responses ran into data.max_response_length (raise it), or the "
                f"rollout backend drops the end-of-turn token from the response ids (check its stop settings: the "
                f"edit step needs the tokenizer's end-of-turn id at the end of every finished response). Stops past "
                f"editgrpo.max_truncated_share={cfg.max_truncated_share}; +editgrpo.stop_on_edit_failures=False "
                f"keeps training."
            ), share > cfg.max_truncated_share)


def _stop_or_warn(cfg: EditRolloutConfig, message: str, past_limit: bool) -> None:
    if past_limit and cfg.stop_on_edit_failures:
        raise RuntimeError(message)
    logger.warning(message)


def _edit_fields(**values: Any) -> dict[str, Any]:
    base = {
        "is_edited": False,
        "edit_ops": [],
        "edit_sentences": [],
        "edit_tokens_inserted": 0,
        "edit_tokens_kept": 0,
        "edit_source_session": -1,
        "edit_truncated": False,
        "edit_kept_runs": [],
    }
    base.update(values)
    return base


def _mark_sampled(output: AgentLoopOutput) -> AgentLoopOutput:
    for key, value in _edit_fields().items():
        output.extra_fields.setdefault(key, value)
    return output


def _duplicate(source: AgentLoopOutput, src: int, error: Optional[str] = None) -> AgentLoopOutput:
    extra = {k: v for k, v in source.extra_fields.items() if k != "edit_analysis"}
    extra.update(_edit_fields(edit_source_session=src, edit_duplicate=True))
    if error is not None:
        extra["edit_error"] = error
    return source.model_copy(
        update={"extra_fields": extra, "metrics": source.metrics.model_copy(), "reward_score": None}
    )


def _edited_output(source: AgentLoopOutput, src: int, result, spliced, analysis, elapsed: float) -> AgentLoopOutput:
    extra = {k: v for k, v in source.extra_fields.items() if k not in ("edit_analysis", "edit_error")}
    extra.update(
        _edit_fields(
            is_edited=True,
            edit_ops=[op.kind for op in result.ops],
            edit_sentences=[
                {"kind": op.kind, "gen_index": op.gen_index, "ref_index": op.ref_index} for op in result.ops
            ],
            edit_tokens_inserted=spliced.num_inserted_tokens,
            edit_tokens_kept=spliced.num_kept_tokens,
            edit_source_session=src,
            edit_truncated=spliced.truncated,
            edit_kept_runs=[list(run) for run in spliced.kept],
            edit_time_s=float(elapsed),
        )
    )
    if analysis is not None:
        extra["edit_analysis"] = analysis
    return source.model_copy(
        update={
            "response_ids": list(spliced.response_ids),
            "response_mask": [1] * len(spliced.response_ids),  # every token is a policy token to be trained on
            "response_logprobs": None,
            "routed_experts": None,
            "reward_score": None,
            "extra_fields": extra,
            "metrics": source.metrics.model_copy(),
        }
    )


def _edited_analysis(result, gen, ref, text: str) -> Optional[dict]:
    """The edited report's ReportAnalysis (entities carried over from the source sentences), if its sentence split
    is exactly the edit's sentences; else None (the reward then analyses the text itself)."""
    from verl_ext.editing import ReportAnalysis, Sentence, split_sentences

    spans = split_sentences(text)
    if len(spans) != len(result.source):
        return None
    sentences = []
    for (a, b), (kind, idx) in zip(spans, result.source):
        origin = (gen if kind == "gen" else ref).sentences[idx]
        if text[a:b] != origin.text:
            return None
        sentences.append(Sentence(text[a:b], a, b, origin.entities))
    return ReportAnalysis(text=text, sentences=tuple(sentences)).to_dict()
