"""The variant registry: one file per variant declares only what differs from the others.

A variant module calls :func:`registry.register` with a :class:`Variant`; the trainer reads
these fields and never branches on a variant's name. Modules in this package are discovered
on first use (files starting with ``_`` are helpers, not variants), so adding a variant is one
new file plus one ``variants.<name>`` params block.
"""

from pipeline.core.variants.base import FAMILIES, Hyper, Options, Variant, registry
from pipeline.infra.errors import PipelineError

__all__ = ["FAMILIES", "Hyper", "Options", "Variant", "known", "registry"]


def known(name: str) -> Variant:
    """The registered variant ``name``, or a one-line error listing the known ones."""
    try:
        return registry.get(name)
    except KeyError:
        raise PipelineError(
            f"unknown variant {name!r} (known: {', '.join(registry.names())})"
        ) from None
