"""The experiment controller: Katib ``Experiment`` YAML to finished trials.

Layout: :mod:`spec` (typed experiment), :mod:`validation` (Katib's admission, with
:mod:`parameters`, :mod:`template`, :mod:`fields`), :mod:`checks` (what a backend and the
services at hand can run), :mod:`reconcile` (the pure state machine) and :mod:`trials` (trial
records), :mod:`runner` (the I/O loop) talking to a :mod:`backend` (the ``Backend`` protocol;
:mod:`local` runs trial processes), :mod:`collector` (metrics collection and early-stopping
rules, shared by backends) over :mod:`metrics` (line parsers), :mod:`replies` (checks on what
the suggestion service says), :mod:`services` and :mod:`earlystop` (gRPC clients and
in-process services), :mod:`store` (the results directory), :mod:`push` (``report_metrics``),
:mod:`cli` (``katib``). SIGINT and SIGTERM arrive as data (:mod:`katib.api.signals`).
"""
