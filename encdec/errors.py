"""The exceptions encdec raises. Every one names what was wrong and what was expected."""


class EncdecError(Exception):
    """Base class of every error encdec raises on purpose."""


class ConfigError(EncdecError, ValueError):
    """A config that is unknown, inconsistent, or contradicts the weights."""


class CheckpointError(EncdecError):
    """A checkpoint file that is missing, truncated, corrupt or does not fit the model."""


class UnsafePickleError(CheckpointError):
    """A `pytorch_model.bin` whose pickle asks for anything but tensors and plain containers."""


class InputError(EncdecError, ValueError):
    """Model inputs that cannot be run: ids out of range, too long, mismatched batches."""


class MissingFrameworkError(EncdecError, ImportError):
    """A port was asked for whose framework is not installed."""


class NonFiniteError(EncdecError, ArithmeticError):
    """Scores that became NaN or infinite while computing, e.g. from a non-finite weight."""


class ExportError(EncdecError, ValueError):
    """An export that cannot be written as asked: an unknown kind or option, a destination that
    exists, a dtype its runtime cannot run."""
