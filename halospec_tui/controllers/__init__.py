"""Draft-length controllers: each module holds one controller's decision logic and its
settings; `registry.REGISTRY` lists them by the name a mode uses (`adaptive:NAME`).

Adding a controller is one new module here and one entry in `registry.REGISTRY`: the
profile's `[controller.NAME]` table, its validation and docs/profiles.md follow from the entry.
"""
