"""The project's tests (a package, so that ``tests`` is this folder even where another distribution installed a
top-level ``tests`` package, as rampdemand's wheel does)."""
