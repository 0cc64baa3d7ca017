"""verl_ext.trainer.position_ids: verl's mini-batch split of Qwen2.5-VL position_ids when every sequence of the batch
has the same length, packed as TransferQueue packs it (simple_storage_manager.py:574)."""
import pytest
import torch
from tensordict import TensorDict


def _batch(lengths: list[int]) -> TensorDict:
    rows = [torch.arange(4 * n).reshape(4, n) for n in lengths]
    return TensorDict({"position_ids": torch.nested.as_nested_tensor(rows, layout=torch.jagged)},
                      batch_size=len(lengths)), rows


def _split(data: TensorDict, fix) -> list[torch.Tensor]:
    """engine_workers.update_actor: fix the 3-D position ids, then take a mini-batch (tensordict_utils.py:495)."""
    from verl.utils.tensordict_utils import index_select_tensor_dict

    fix(data)
    mini = index_select_tensor_dict(data, torch.tensor([1, 0]))
    return list(mini["position_ids"].unbind())


def test_verl_alone_fails_on_equal_lengths():
    from verl.utils import tensordict_utils

    original = getattr(tensordict_utils.maybe_fix_3d_position_ids, "__wrapped__",
                       tensordict_utils.maybe_fix_3d_position_ids)
    data, _ = _batch([6, 6, 6])
    assert data["position_ids"]._ragged_idx == 1  # torch found no varying dim: offsets over the 4 rope rows
    with pytest.raises(RuntimeError):
        _split(data, original)
    data, rows = _batch([5, 7, 6])  # unequal lengths: ragged along the tokens, verl's path works
    assert [t.tolist() for t in _split(data, original)] == [rows[1].tolist(), rows[0].tolist()]


@pytest.mark.parametrize("lengths", [[6, 6, 6], [5, 7, 6], [3]])
def test_guard_splits_every_batch(lengths):
    from verl.utils import tensordict_utils

    from verl_ext.trainer.position_ids import fix_3d_position_ids

    original = getattr(tensordict_utils.maybe_fix_3d_position_ids, "__wrapped__",
                       tensordict_utils.maybe_fix_3d_position_ids)
    if len(lengths) == 1:
        lengths = lengths * 2
    data, rows = _batch(lengths)
    assert [t.tolist() for t in _split(data, fix_3d_position_ids(original))] == [rows[1].tolist(), rows[0].tolist()]


def test_guard_is_installed_where_verl_binds_the_function():
    import verl  # noqa: F401  (loads the verl_ext plugin)
    import verl.workers.engine.base as base
    import verl.workers.engine_workers as engine_workers

    assert getattr(engine_workers.maybe_fix_3d_position_ids, "__verl_ext_position_ids__", False)
    assert getattr(base.maybe_fix_3d_position_ids, "__verl_ext_position_ids__", False)
