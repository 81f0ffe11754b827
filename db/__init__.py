"""Observation-log store and the ``DBManager`` gRPC service (``katib-db-manager``).

- :mod:`katib.db.store` — the :class:`~katib.db.store.ObservationStore` interface and
  :func:`~katib.db.store.open_store`; backends in :mod:`~katib.db.sqlite` (embedded default),
  :mod:`~katib.db.postgres` and :mod:`~katib.db.mysql`.
- :mod:`katib.db.config` — database URLs and Katib's ``DB_NAME`` / ``KATIB_*`` variables.
- :mod:`katib.db.records`, :mod:`katib.db.timestamps` — validation and exact RFC 3339 times.
- :mod:`katib.db.service`, :mod:`katib.db.server` — the gRPC servicer and console script.
- :mod:`katib.db.client` — :class:`~katib.db.client.DBClient`, what the rest of the project uses.
- :mod:`katib.db.testing` — throw-away PostgreSQL / MariaDB servers for tests and benchmarks.
"""
