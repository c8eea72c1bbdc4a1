"""Errors raised for bad user input. Each message names the file or argument and says how to fix it.

All derive from :class:`EfficientDetError` (and from ``ValueError`` or ``RuntimeError``), so the CLI can
print them without a stack trace.
"""


class EfficientDetError(Exception):
    """Base class of the errors this library raises for bad input, files or settings."""


class ConfigError(EfficientDetError, ValueError):
    """An unknown model name, argument, or an invalid configuration value."""


class DataError(EfficientDetError, ValueError):
    """A dataset, annotation file or image that cannot be used as given."""


class WeightsError(EfficientDetError, RuntimeError):
    """Weights that cannot be downloaded, verified or loaded into a model."""
