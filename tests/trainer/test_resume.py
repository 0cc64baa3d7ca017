"""The checkpoint-folder logic of `verl_ext.trainer.resume` on folders laid out as a killed run leaves them."""
import json
from pathlib import Path

from verl_ext.trainer.resume import (COMMIT_FILE, TRACKER_FILE, atomic_write_text, kept_metric_lines, plan_resume,
                                     prune_checkpoints, stale_record_files)


def _checkpoint(root: Path, step: int, complete: bool = True, actor: bool = True) -> Path:
    folder = root / f"global_step_{step}"
    folder.mkdir(parents=True)
    if actor:
        (folder / "actor").mkdir()
    (folder / "data.pt").write_bytes(b"x")
    if complete:
        (folder / COMMIT_FILE).write_text(json.dumps({"global_step": step}))
    return folder


def test_plan_resume_falls_back_past_an_incomplete_checkpoint(tmp_path):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4, complete=False)  # killed between verl's tracker and the commit file
    (tmp_path / TRACKER_FILE).write_text("4")
    plan = plan_resume(tmp_path)
    assert plan.step == 2 and plan.tracker == 4 and plan.incomplete == [4]
    lines = plan.messages()
    assert "resuming from the last complete checkpoint global_step_2" in lines[0]
    assert "removing incomplete checkpoint global_step_4" in lines[1]


def test_plan_resume_with_an_empty_tracker(tmp_path):
    _checkpoint(tmp_path, 3)
    _checkpoint(tmp_path, 6, complete=False, actor=False)  # killed while the actor was written
    (tmp_path / TRACKER_FILE).write_text("")  # killed between verl's truncation and write
    plan = plan_resume(tmp_path)
    assert plan.step == 3 and plan.tracker is None and plan.incomplete == [6]
    assert "is unreadable" in plan.messages()[0]


def test_plan_resume_needs_the_actor_folder(tmp_path):
    _checkpoint(tmp_path, 1)
    _checkpoint(tmp_path, 2, actor=False)
    assert plan_resume(tmp_path).step == 1


def test_plan_resume_leaves_checkpoints_without_commit_files_to_verl(tmp_path):
    _checkpoint(tmp_path, 5, complete=False)  # written by plain verl or an earlier verl_ext
    (tmp_path / TRACKER_FILE).write_text("5")
    plan = plan_resume(tmp_path)
    assert plan.step is None and plan.messages() == []
    assert plan_resume(tmp_path / "missing").step is None


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path):
    for step in (1, 2, 3):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 4, complete=False)  # being written: never pruned
    assert prune_checkpoints(tmp_path, 1) == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["global_step_3", "global_step_4"]
    assert prune_checkpoints(tmp_path, None) == []


def test_kept_metric_lines_drops_later_and_cut_lines():
    lines = [json.dumps({"step": s, "data": {"x": s}}) for s in (1, 2, 3)]
    text = "\n".join(lines) + '\n{"step": 4, "da'
    assert kept_metric_lines(text, 2) == lines[0] + "\n" + lines[1] + "\n"


def test_stale_record_files(tmp_path):
    for name in ("1.jsonl", "2.jsonl", "edits_2.jsonl", "3.jsonl", "edits_3.jsonl", "notes.txt", "10.jsonl"):
        (tmp_path / name).write_text("")
    assert [p.name for p in stale_record_files(tmp_path, 2)] == ["10.jsonl", "3.jsonl", "edits_3.jsonl"]
    assert stale_record_files(tmp_path / "missing", 0) == []


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "latest_checkpointed_iteration.txt"
    atomic_write_text(path, "2")
    atomic_write_text(path, "3")
    assert path.read_text() == "3" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_shuffled_order_resumes_exactly():
    """verl's ``data.pt`` (``train_dataloader.state_dict()``, trainer_base.py:1000) restores the shuffled order of its
    sampler (``create_rl_sampler``: torchdata's stateful ``RandomSampler``) at any step, epoch boundaries included:
    a run resumed after k batches trains on the batches the uninterrupted run trains on."""
    from omegaconf import OmegaConf
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.trainer.ppo.utils import create_rl_sampler

    data = list(range(6))
    config = OmegaConf.create({"shuffle": True, "seed": 1})

    def loader():  # as verl's _init_dataloader builds it at every start (trainer_base.py:742-749)
        return StatefulDataLoader(data, batch_size=2, drop_last=True, sampler=create_rl_sampler(config, data))

    def take(dl, state, n):  # verl's _fetch_one_gen_batch: a new epoch on StopIteration (trainer_base.py:1466-1476)
        batches = []
        for _ in range(n):
            try:
                batches.append(next(state["it"]).tolist())
            except StopIteration:
                state["it"] = iter(dl)
                batches.append(next(state["it"]).tolist())
        return batches

    dl = loader()
    reference = take(dl, {"it": iter(dl)}, 10)
    assert sorted(sum(reference[:3], [])) == data and reference[:3] != reference[3:6]  # shuffled, per epoch
    for k in range(1, 9):
        dl = loader()
        state = {"it": iter(dl)}
        head = take(dl, state, k)
        saved = dl.state_dict()
        resumed = loader()
        resumed.load_state_dict(saved)
        assert head + take(resumed, {"it": iter(resumed)}, 10 - k) == reference, k


def test_asynchronous_saves_are_refused_before_anything_loads():
    import pytest
    from omegaconf import OmegaConf

    from verl_ext.trainer.resume import ResumableTrainerMixin

    class Base:
        def init(self):
            raise AssertionError("verl's init must not run")

    class Trainer(ResumableTrainerMixin, Base):
        pass

    trainer = Trainer()
    trainer.config = OmegaConf.create({"actor_rollout_ref": {"actor": {"checkpoint": {"async_save": True}}}})
    with pytest.raises(ValueError, match="async_save=True"):
        trainer.init()
