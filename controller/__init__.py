"""The experiment controller: Katib ``Experiment`` YAML to finished trials, on one machine.

Layout: :mod:`spec` (typed experiment), :mod:`validation` (+ :mod:`parameters`,
:mod:`template`, :mod:`fields`), :mod:`reconcile` (the pure state machine) and :mod:`trials`
(trial records), :mod:`runner` (the I/O loop) with :mod:`local` (trial processes),
:mod:`metrics` (collectors), :mod:`services` (gRPC clients and in-process services),
:mod:`store` (the results directory), :mod:`push` (``report_metrics``), :mod:`cli` (``katib``).
"""
