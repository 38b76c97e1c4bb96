"""One error hierarchy for everything a user can get wrong.

Every message names the thing, the problem and, where there is one, the fix.
The CLI prints ``str(error)`` on one line and exits with status 2.
"""


class FodlamError(Exception):
    """Base class of every error FODLAM reports to a user."""

    exit_code = 2

    def __str__(self) -> str:  # always one line
        return " ".join(super().__str__().split())


class InputError(FodlamError):
    """A file or argument the user gave cannot be used as it is."""


class ConfigError(InputError):
    """A 2017-style configuration, budget or profile file is malformed."""


class LayerError(FodlamError):
    """A layer's shape parameters are inconsistent (e.g. channels not divisible by groups)."""


class ModelError(FodlamError):
    """A model graph cannot be imported (corrupt file, invalid graph, unresolved shape)."""


class UnmodeledError(FodlamError):
    """--strict was given and some node could not be costed."""


class BudgetExceeded(FodlamError):
    """A profile broke an energy or latency budget (exit status 1, not 2)."""

    exit_code = 1
