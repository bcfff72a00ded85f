"""The evaluation of a run: `metrics` (the per-segment table of every mode against the fixed
k's) and `text` (that table as text, and plots of each controller's k). Running an evaluation
(N seeded runs, their medians) is halospec_tui/evaluation.py's, above the session."""
