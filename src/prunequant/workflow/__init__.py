"""Workflow tooling: what runs around the study's jobs, not the study itself.

- :mod:`~prunequant.workflow.code_digests` — the digest of the code each rule's script runs,
  its ``code`` param, so that an edit reruns exactly the stages that run the edited code;
- :mod:`~prunequant.workflow.jobs` — a job's log: output, warnings, errors, peak memory, time;
- :mod:`~prunequant.workflow.warmstart` — a job handed to a process forked from one that has
  already imported the libraries (:mod:`~prunequant.workflow.warm_server` serves it, and
  :mod:`~prunequant.workflow.process_state` makes the forked process the job's own).

The package imports no submodule: every job's first line imports the warm start, which must cost
nothing but the standard library.
"""
