"""The small interface tier-3 scenarios are written against, and its two implementations.

`backend`: the Backend protocol, what it returns and raises; `local`: the charm on this machine's pods;
`real_juju`: the charm on a real Juju model on Kubernetes, through jubilant.
"""
