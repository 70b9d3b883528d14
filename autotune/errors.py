"""The exception the autotuner raises on bad input."""
from tex.errors import TexError


class TuneError(TexError, ValueError):
    """A template, space, configuration, log or tuning option that cannot be honoured."""
