"""The report: tables, figures and Markdown built from the study's files, one job per module.

- :mod:`~prunequant.report.collect` — per-run rows, latency rows, provenance;
- :mod:`~prunequant.report.aggregate` — one row per variant with intervals and paired verdicts;
- :mod:`~prunequant.report.pareto` — accuracy against a cost, non-dominated variants marked;
- :mod:`~prunequant.report.study_figures` — the pruning and quantization study figures;
- :mod:`~prunequant.report.sections` and :mod:`~prunequant.report.markdown` — the report's text;
- :mod:`~prunequant.report.build` — the report job, from files to every output.

Only files and explicit arguments come in; nothing here reads the workflow config. The
package imports no submodule, so a job depends only on the modules it uses.
"""
