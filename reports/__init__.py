"""Static HTML reports: model evaluation, training-data EDA and service operations.

Each page is one self-contained file (charts as data: URIs, inline CSS, a strict
Content-Security-Policy) rendered by Jinja2 with autoescaping. This package draws what it is
given: metrics come from `training.evaluate` and history from `storage`, wired by
`watcher.reporting`.
"""
