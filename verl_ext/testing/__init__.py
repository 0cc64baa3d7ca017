"""Offline fixtures: tiny randomly initialised models in their real on-disk formats, and synthetic CXR studies.

Nothing here downloads anything; every builder writes to a directory the caller chooses.
"""
