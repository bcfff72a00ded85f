"""The live monitor and the report viewer (Textual). Only this package imports textual.

Entry points for the CLI: `app.run_monitor(profile, out)` and `app.run_report(path)`.
"""
