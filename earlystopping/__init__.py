"""Early stopping: Katib's ``EarlyStopping`` gRPC service and the rules it computes.

``curves`` holds the numerics (median of running averages, successive-halving rungs) over plain
numpy arrays; ``rules`` the domain rule type and the evaluator a controller applies to a trial's
stream of rows; ``algorithms`` the named algorithms (``medianstop``, ``asha``, ``none``) with
their typed settings; ``history`` reads learning curves from the DB service; ``service`` is the
thin gRPC adapter, ``server`` the ``katib-earlystopping`` console script and ``client`` what a
controller uses to fetch rules for :class:`~katib.earlystopping.rules.RuleEvaluator`.
"""
