"""Fixtures for the evaluation pipeline: a tiny Qwen2.5-VL, test parquets in the data-prep format, and real verl
FSDP1/FSDP2 checkpoints written on CPU by ``_write_fsdp_checkpoint.py`` (gloo, 2 ranks)."""
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_ext.data.schema import make_row, row_schema
from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

HERE = Path(__file__).parent
REFERENCES = (
    "The lungs are clear. No pleural effusion or pneumothorax.",
    "Small left pleural effusion with adjacent atelectasis.",
    "Mild cardiomegaly. No focal consolidation.",
    "Moderate pulmonary edema has increased.",
    "No acute cardiopulmonary abnormality.",
)


@pytest.fixture(scope="session")
def scorer_paths():
    """Tiny random scorer models in their real formats (``verl_ext.testing.scorer_models``), for the evaluator."""
    from verl_ext.testing.scorer_models import shared_models

    return shared_models()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen"))


def _png(rng, height, width) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((rng.random((height, width)) * 255).astype("uint8"), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_test_parquet(path: Path, *, image_mode: str = "bytes", n_rows: int = 5, seed: int = 0,
                       min_pixels: int = 56 * 56, max_pixels: int = 112 * 112) -> list[dict]:
    """A test split in the data-prep format (``verl_ext.data.schema``): 1-2 grey images per study, as bytes or
    as paths next to `path`. Returns the rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_rows):
        k = 1 + i % 2
        images = []
        for j in range(k):
            data = _png(rng, 60 + 8 * i, 84)
            if image_mode == "bytes":
                images.append({"bytes": data, "path": f"s{i}_{j}.png", "min_pixels": min_pixels,
                               "max_pixels": max_pixels})
            else:
                file = path.parent / f"img_{seed}_{i}_{j}.png"
                file.write_bytes(data)
                images.append({"image": str(file), "min_pixels": min_pixels, "max_pixels": max_pixels})
        prompt = "<image>" * k + "\nAs a radiologist assistant, describe the findings.\nINDICATION: cough."
        rows.append(make_row(
            data_source="iu_xray" if i < 3 else "padchest_gr", prompt_text=prompt, findings=REFERENCES[i % 5],
            images=images,
            extra_info={"split": "test", "index": i, "dataset": "iu_xray", "study_id": f"S{seed}{i:03d}",
                        "n_images": k},
        ))
    pq.write_table(pa.Table.from_pylist(rows, schema=row_schema(image_mode)), path)
    return rows


@pytest.fixture(scope="session")
def parquet_writer():
    """`write_test_parquet` (test modules cannot import conftest under --import-mode=importlib)."""
    return write_test_parquet


@pytest.fixture(scope="session")
def references() -> tuple[str, ...]:
    return REFERENCES


@pytest.fixture(scope="session")
def test_parquet(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "test.parquet"
    write_test_parquet(path)
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_distributed(script: Path | str, *args: str, world_size: int, cwd: Path | None = None,
                    timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Start `world_size` ranks of `script` (a file, or ``-m <module>`` when it is a dotted module name) with the
    env torchrun would give them (no launcher process); `env` adds variables."""
    port = str(_free_port())
    target = [str(script)] if isinstance(script, Path) else ["-m", script]
    procs = []
    for rank in range(world_size):
        rank_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", WANDB_MODE="offline",
                        MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank), LOCAL_RANK=str(rank),
                        WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size), **(env or {}))
        procs.append(subprocess.Popen([sys.executable, *target, *args], env=rank_env, cwd=cwd, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    failed = [r for r in results if r.returncode != 0]
    if failed:
        raise AssertionError(f"{script} failed ({failed[0].returncode}):\n{failed[0].stdout[-3000:]}\n"
                             f"{failed[0].stderr[-6000:]}")
    return results[0]


@pytest.fixture(scope="session")
def distributed_runner():
    """`run_distributed` for test modules."""
    return run_distributed


@pytest.fixture(scope="session")
def fsdp_checkpoints(tmp_path_factory, tiny_model) -> Path:
    """``ROOT/fsdp2`` and ``ROOT/fsdp`` (FSDP1): trainer ``default_local_dir``s with ``global_step_3/actor`` written
    by verl's FSDPCheckpointManager from a 2-rank model (perturbed weights); ``ROOT/reference_state.pt`` holds the
    full fp32 state dict."""
    root = tmp_path_factory.mktemp("ckpt")
    run_distributed(HERE / "_write_fsdp_checkpoint.py", str(tiny_model), str(root), "3", world_size=2)
    return root
