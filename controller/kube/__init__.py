"""Katib experiments on Kubernetes: trials as Jobs (or any kind), state in Katib's CRDs.

See ``docs/kubernetes.md`` for the design: the operator (``katib-controller``) reuses the pure
:func:`katib.controller.reconcile.reconcile`, the suggestion client and the metrics parsing of
local runs; only reading and writing cluster objects is new.
"""
