"""A faithful fake of the Kubernetes API server on loopback, for tests and simulations.

The real ``kubernetes`` client talks to it over HTTP; a simulated Job controller runs trial pods
as local processes. Nothing in the product depends on it.
"""
