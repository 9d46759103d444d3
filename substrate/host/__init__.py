"""The host sandbox: pods (network, mount and UTS namespaces) on one Linux machine.

`netns` names and cleans up what a run creates on the host, `pods` holds the run and its pods,
`hosts` writes what every pod resolves, `processes` and `shim` run and reap pod processes.
"""
