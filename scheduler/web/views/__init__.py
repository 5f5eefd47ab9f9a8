"""One module per dashboard view, each exposing `router`; routes only render what the
functions in scheduler/web/queries gather."""
