"""A Pebble-compatible daemon and CLI for the local substrate, where no Pebble binary exists.

`daemon` serves Pebble's HTTP API (v1) on a unix socket so that `ops.pebble.Client` drives real
processes; `cli` is the `pebble` command that workloads call (`pebble notify ...`). Importing
this package imports nothing else, so the standard-library-only CLI can run without the venv.
"""
