"""The command line's error conventions, in one place.

Exit codes (``mmreward COMMAND``):

* ``0``: the work was done.
* ``2``: a usage or input error: a flag, a file or a line the user gave is wrong, or an output folder holds another
  run's work. Nothing was started; the message names the flag, file or line and says what to do.
* ``1``: a runtime failure: the work started and failed, or finished having done nothing (a teacher that never
  answered, a suite with no item to judge), or a check found problems (``check-model``).

Library code raises :class:`InputError` (a ``ValueError``) or :class:`RunFailure` (a ``RuntimeError``); the CLI
turns them into the exit codes above.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INPUT = 2


class InputError(ValueError):
    """Something the user gave (a flag's value, a file, a line in it, an output folder) is wrong; exit 2."""


class RunFailure(RuntimeError):
    """The work ran and failed, or did nothing at all; exit 1."""


def flag_error(flag: str, value, problem: str, fix: str = "") -> InputError:
    """``--flag VALUE: problem; fix`` in the CLI's own spelling."""
    shown = f" {value}" if value not in (None, "") else ""
    return InputError(f"{flag}{shown}: {problem}" + (f"; {fix}" if fix else ""))
