"""Bayesian optimisation with Gaussian processes (``bayesianoptimization``).

Modules: :mod:`.kernel` (Matérn-5/2 ARD with categorical overlap), :mod:`.priors`
(hyper-parameter priors), :mod:`.gp` (MAP fit and posterior), :mod:`.acquisition` (log-EI, log-PI,
LCB, GP-Hedge), :mod:`.optimize` (candidates, L-BFGS-B and coordinate sweeps), :mod:`.ensembles`
(RF/ET/GBRT surrogates via optional scikit-learn) and :mod:`.algorithm` (the Katib algorithm).
"""
