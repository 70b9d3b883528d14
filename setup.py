from setuptools import find_packages, setup

setup(
    name="tex",
    version="0.1.0",
    description="A tensor-expression compiler: declare what to compute, schedule how, "
                "compile to LLVM.",
    packages=find_packages(include=["tex", "tex.*", "autotune", "autotune.*"]),
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "llvmlite>=0.42"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "nbclient>=0.7", "nbformat>=5",
                 "ipykernel>=6", "jupytext>=1.14"],
    },
)
