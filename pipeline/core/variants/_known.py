"""Looking a variant up by the name a person typed: a one-line error listing the known ones."""

from pipeline.core.variants.base import Variant, registry
from pipeline.infra.errors import PipelineError


def known(name: str) -> Variant:
    """The registered variant ``name``, or a one-line error listing the known ones."""
    try:
        return registry.get(name)
    except KeyError:
        raise PipelineError(
            f"unknown variant {name!r} (known: {', '.join(registry.names())})"
        ) from None
