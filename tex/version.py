"""tex's version, its single source: `tex.__version__`, setup.py and the keys of the disk
caches read it from here. This module imports nothing, so any module of tex may import it."""

__version__ = "0.1.0"
