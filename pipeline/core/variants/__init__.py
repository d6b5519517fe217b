"""The variant registry: one file per variant declares only what differs from the others.

A variant module calls :func:`registry.register` with a :class:`Variant`; the trainer reads
these fields and never branches on a variant's name. Modules in this package are discovered
on first use (files starting with ``_`` are helpers, not variants), so adding a variant is one
new file plus one ``variants.<name>`` params block.

This ``__init__`` imports nothing (the registry imports this package to discover the variant
files): the registry and its types are in ``base``, :func:`known` in ``_known``.
"""
