"""What `python -m substrate <command>` runs: `demo`, `bench`, `bench-backup`."""
