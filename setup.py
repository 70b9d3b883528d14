import re
from pathlib import Path

from setuptools import find_packages, setup

# cuda-bindings + nvidia-cuda-nvrtc compile CUDA C in process (no GPU needed);
# nvidia-cuda-runtime and -crt only for the headers kernels include
# (cuda_fp16.h; mma.h, which includes crt/mma.h)
CUDA = ["cuda-bindings>=13.0", "nvidia-cuda-nvrtc>=13.0",
        "nvidia-cuda-runtime>=13.0", "nvidia-cuda-crt>=13.0"]
# nvdisasm and cuobjdump read the SASS of compiled kernels (bench/gpu_static.py)
GPU_DEV = ["nvidia-cuda-nvdisasm>=13.5", "nvidia-cuda-cuobjdump>=13.5"]
# xgboost-cpu is XGBoost without the CUDA libraries (5 MB rather than 300)
TUNE = ["xgboost-cpu>=2.0"]
# tuning jobs on a Dask cluster (tex-tune job --workers / --scheduler)
CLUSTER = ["dask>=2024.1", "distributed>=2024.1"]


def tex_version() -> str:
    """The version in tex/version.py, its single source (read, not imported: importing
    tex needs its dependencies)."""
    text = (Path(__file__).resolve().parent / "tex" / "version.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE).group(1)


setup(
    name="tex",
    version=tex_version(),
    description="A tensor-expression compiler: declare what to compute, schedule how, "
                "compile to LLVM, and tune.",
    packages=find_packages(include=["tex", "tex.*", "autotune", "autotune.*"]),
    package_data={"tex.runtime": ["cuda_simulator_include/*.h"]},  # the CUDA simulator's
    python_requires=">=3.10",
    license="MIT",
    # no "License ::" classifier: setuptools >= 77 deprecates them in favour of `license`
    classifiers=["Programming Language :: Python :: 3", "Operating System :: POSIX :: Linux"],
    install_requires=["numpy>=1.24", "llvmlite>=0.42", "ml_dtypes>=0.4"],
    extras_require={
        "cuda": CUDA,
        "tune": TUNE,
        "cluster": CLUSTER,
        # the tests compile CUDA C with NVRTC (no GPU needed), train the tuner's model, run
        # tuning jobs on a local Dask cluster and register kernels as PyTorch operators
        # (tex.torch). torch: the releases tex.torch is tested with; where pip finds the
        # CPU wheel of 2.13 (see README), it takes that one rather than a newer build that
        # brings the CUDA libraries along (gigabytes)
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", "nbclient>=0.7", "nbformat>=5",
                 "ipykernel>=6", "jupytext>=1.14", "matplotlib>=3.5", "torch>=2.4,<2.14"]
        + CUDA + TUNE + GPU_DEV + CLUSTER,
        "gpu-dev": CUDA + GPU_DEV,
        "plot": ["matplotlib>=3.5"],
    },
    entry_points={"console_scripts": ["tex-tune=autotune.cli:main"]},
)
