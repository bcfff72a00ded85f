"""The UI-free core: runner, controllers, statistics, load, results. Never imports textual."""
