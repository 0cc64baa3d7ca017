"""verl_ext: EditGRPO and related RL methods for chest X-ray report generation, as verl 0.9.1 plugins.

Install with `bash install.sh` (CPU/dev) or `bash install.sh gpu`; see README.md for why the order matters.
"""
from pathlib import Path

from setuptools import find_packages, setup


def _requirements(name: str) -> list[str]:
    lines = Path(__file__).with_name(name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="verl_ext",
    version="0.1.0",
    description="EditGRPO (post-rollout edited GRPO) for radiology report generation, as verl plugins",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["verl_ext", "verl_ext.*"]),
    package_data={"verl_ext": ["config/*.yaml", "clinical/resources/*", "eval/resources/rexrank/*"]},
    # Runtime dependencies only; test tooling and the GPU stack are extras (install.sh installs them in order).
    install_requires=_requirements("requirements.txt"),
    extras_require={
        "dev": _requirements("requirements-dev.txt"),
        # vLLM rollout + the FSDP engine's kernels on CUDA 13 machines (verl[fsdp] without flash-attn).
        "gpu": _requirements("requirements-gpu.txt"),
        # Needs torch installed first and `pip install --no-build-isolation` (its setup.py imports torch).
        "flash-attn": _requirements("requirements-flash-attn.txt"),
    },
    entry_points={
        # verl imports every module of this group at `import verl`, in every process (driver, Ray workers).
        "verl.plugins": ["verl_ext = verl_ext.register"],
    },
)
