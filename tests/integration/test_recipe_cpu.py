"""README's "Debugging a recipe on CPU" command, run as printed: the bash block of that section, from the repository
root, in a user's environment (no W&B settings, no test fixtures). It builds the tiny inputs
(``python -m verl_ext.testing.cpu_run``) and runs ``recipes/iu_xray_editgrpo.sh --cpu`` for two steps.

What it guards: Hydra accepts the recipe plus the CPU profile (no duplicate ``attn_implementation``), the profile's
laptop sizes (mini-batch, one worker each) let README's batch run, the tiny scorers are found where the recipe looks
(``MODELS_DIR``, RadGraph ``radgraph-xl``), everything the run writes lands under ``CKPT_DIR``, and a successful
run ends without a traceback.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Debugging a recipe on CPU"


def readme_block() -> str:
    """The first ```bash block of README's section `SECTION`."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[: section.find("\n## ", 1)]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, f"no bash block in README's {SECTION!r}"
    return match.group(1)


def test_readme_block_is_the_recipe_cpu_command():
    block = readme_block()
    assert "python -m verl_ext.testing.cpu_run" in block and "recipes/iu_xray_editgrpo.sh --cpu" in block
    assert "trainer.total_training_steps=2" in block
    assert block in (REPO / "recipes" / "README.md").read_text(), "recipes/README.md shows another command"


@pytest.fixture(scope="module")
def run():
    # a short TMPDIR: Ray puts its session sockets under it, and an AF_UNIX path may not exceed 107 bytes (pytest's
    # numbered base directories under /tmp/pytest-of-<user>/pytest-<n>/ grow past that once n has three digits)
    tmp = Path(tempfile.mkdtemp(prefix="recipe_cpu_"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "VERL_", "RAY_ADDRESS"))}
    env.update(TMPDIR=str(tmp), PYTHONPATH=str(REPO),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    before = {p.name for p in REPO.iterdir()}
    start = time.time()
    proc = subprocess.run(["bash", "-e", "-c", readme_block()], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    seconds = time.time() - start
    log = proc.stdout + proc.stderr
    (tmp / "run.log").write_text(log)
    print(f"README recipe --cpu block: {seconds:.0f} s")
    assert proc.returncode == 0, f"README block failed after {seconds:.0f} s:\n{log[-6000:]}"
    (tiny,) = [p for p in tmp.iterdir() if p.is_dir() and p.name.startswith("tmp.")]  # the block's mktemp -d
    yield tiny, log, {p.name for p in REPO.iterdir()} - before
    shutil.rmtree(tmp, ignore_errors=True)


def test_two_steps_and_a_checkpoint(run):
    tiny, log, _ = run
    run_dir = tiny / "checkpoints" / "editgrpo" / "iu_xray_editgrpo"
    assert (run_dir / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert (run_dir / "global_step_2" / "actor").is_dir()
    steps = [int(s) for s in re.findall(r"(?:^| )step:(\d+) - ", log, re.M)]
    assert steps[-2:] == [1, 2], steps
    assert re.search(r"critic/score/mean:-?\d", log) and re.search(r"edit/edited_share:\d", log)


def test_outputs_stay_under_the_run_directory(run):
    tiny, _, new_in_repo = run
    run_dir = tiny / "checkpoints" / "editgrpo" / "iu_xray_editgrpo"
    assert not new_in_repo, f"the run wrote into the repository: {sorted(new_in_repo)}"
    (hydra_dir,) = (run_dir / "hydra").iterdir()
    assert (hydra_dir / ".hydra" / "config.yaml").is_file()
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb")), "no offline W&B run under the run directory"


def test_successful_run_ends_cleanly(run):
    _, log, _ = run
    assert "Traceback" not in log and "ConnectionResetError" not in log, log[log.find("Traceback") - 2000:][:6000]
    assert "wandb: You can sync this run to the cloud by running:" in log  # the offline run was finished
