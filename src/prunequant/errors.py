"""Errors a user causes and can fix themselves (a bad setting, a bad file).

A :class:`UserError` is shown to the user as one line, without a traceback (see
:func:`prunequant.workflow.jobs.job_logging`), so its message must carry everything needed to act:
the file or config key, what is wrong with it, and how to fix it.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """An error the user caused and can fix; the message is one line: where, what, and the fix."""
