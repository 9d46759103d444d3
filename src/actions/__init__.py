"""Action handlers: each gets the hook's snapshot and what it may act on, never the charm."""
