"""Neural architecture search for katib-py: ENAS and DARTS suggestions and their trial programs.

The suggestion side (:mod:`katib.nas.enas.algorithm`, :mod:`katib.nas.darts.algorithm`) is served
by ``katib-suggestion`` as ``enas`` and ``darts``; torch is imported only when they run.
"""
