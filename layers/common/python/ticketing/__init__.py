"""The ticketing domain, shared by every function through the common layer.

Modules import their third-party libraries themselves and nothing here imports
them eagerly, so a function pays at cold start only for what it uses.
"""
