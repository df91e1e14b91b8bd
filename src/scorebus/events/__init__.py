"""Events: the CloudEvents envelope, JSON codecs and schema validation. Knows nothing else."""

from .codec import (
    decode_json,
    encode_data,
    encode_structured,
    from_structured,
    is_structured,
    to_structured,
)
from .envelope import Event
from .schema import Schema

__all__ = [
    "Event",
    "Schema",
    "decode_json",
    "encode_data",
    "encode_structured",
    "from_structured",
    "is_structured",
    "to_structured",
]
