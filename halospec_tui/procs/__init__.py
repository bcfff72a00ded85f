"""Process lifetimes: every child the harness starts, and the helpers children run.

* `children`: `spawn` and `Child` (the parent side: tracked, stopped on every exit path);
* `parent`: `parent_gone` (the child side: notice the harness is gone, even after SIGKILL);
* `guard`: `python -m halospec_tui.procs.guard`, which wraps a foreign program;
* `burn`: `python -m halospec_tui.procs.burn`, one core of CPU load.

Used by the core (load burners) and the backends (the embedded engine, llama-server)
alike, so it imports neither. This file imports nothing, so that a burner starts light.
"""
