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


class UserCodeError(ModelError):
    """The user's own code (a model factory, a forward) stopped the run: it raised, called
    sys.exit() or was interrupted. The model fails (exit status 1 from ``fodlam check``,
    failed points in a sweep); the run goes on."""

    exit_code = 1


class StopRequested(KeyboardInterrupt):
    """A signal FODLAM's own handler turned into an exception (e.g. SIGTERM during a sweep):
    a stop the user asked for, which user code being run at the time does not absorb."""


def guard_user_code(what: str, fn, *args, **kwargs):
    """Call user code; an exception that is not an ``Exception`` (SystemExit,
    KeyboardInterrupt, any other BaseException) becomes a ``UserCodeError`` naming
    ``what``, so nothing the user's code does can end FODLAM's process or skip its
    checks. Ordinary exceptions, and a ``StopRequested``, propagate."""
    try:
        return fn(*args, **kwargs)
    except (Exception, StopRequested):
        raise
    except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, ...
        detail = f"({e.code!r})" if isinstance(e, SystemExit) else (f": {e}" if str(e) else "")
        raise UserCodeError(f"{what} stopped with {type(e).__name__}{detail}; the model is "
                            "marked failed (fix the model code)") from None


class UnmodeledError(FodlamError):
    """--strict was given and some node could not be costed."""


class BudgetExceeded(FodlamError):
    """A profile broke an energy or latency budget (exit status 1, not 2)."""

    exit_code = 1
