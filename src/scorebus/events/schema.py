"""Validation of event data against the schema a scorer or handler declares.

A schema is a ``msgspec.Struct`` (fastest: decoded and validated in one pass
from bytes), a pydantic model, any other type msgspec understands (dataclass,
TypedDict, ``dict``), or ``None`` for plain JSON. The error for a bad event
names the field and the problem, e.g. ``$.amount: Expected `float`, got `str```.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from ..errors import DecodeError, SchemaError, TooLargeError

T = TypeVar("T")

DEFAULT_MAX_BYTES = 1 << 20


def _is_pydantic(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "model_validate_json")


class Schema(Generic[T]):
    """A compiled decoder from raw bytes to validated data of type ``T``.

    Args:
        type_: the declared schema, or ``None`` for any JSON value.
        max_bytes: payloads above this size are rejected as too large.
    """

    __slots__ = ("_decode", "max_bytes", "type")

    def __init__(self, type_: type[T] | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.type = type_
        self.max_bytes = max_bytes
        self._decode: Callable[[bytes], T] = self._compile(type_)

    @staticmethod
    def _compile(type_: Any) -> Callable[[bytes], Any]:
        if type_ is None:
            return msgspec.json.Decoder().decode
        if _is_pydantic(type_):
            return type_.model_validate_json  # type: ignore[no-any-return]
        return msgspec.json.Decoder(type_).decode

    def decode(self, raw: bytes) -> T:
        """Decode and validate one payload.

        Raises:
            TooLargeError: the payload is over ``max_bytes``.
            DecodeError: the payload is not JSON.
            SchemaError: JSON, but not of the declared shape (names the field).
        """
        if len(raw) > self.max_bytes:
            raise TooLargeError(
                f"payload of {len(raw)} bytes is over the limit of {self.max_bytes}"
            )
        try:
            return self._decode(raw)
        except msgspec.ValidationError as exc:
            raise SchemaError(_describe_msgspec(exc)) from exc
        except msgspec.DecodeError as exc:
            raise DecodeError(f"not valid JSON: {exc}") from exc
        except ValueError as exc:  # pydantic.ValidationError subclasses ValueError
            raise _translate_pydantic(exc) from exc

    def convert(self, obj: Any) -> T:
        """Validate an already-decoded JSON value (structured-mode envelopes)."""
        if self.type is None:
            return obj  # type: ignore[no-any-return]
        if _is_pydantic(self.type):
            try:
                return self.type.model_validate(obj)  # type: ignore[attr-defined,no-any-return]
            except ValueError as exc:
                raise _translate_pydantic(exc) from exc
        try:
            return msgspec.convert(obj, self.type)
        except msgspec.ValidationError as exc:
            raise SchemaError(_describe_msgspec(exc)) from exc

    @property
    def name(self) -> str:
        return "json" if self.type is None else getattr(self.type, "__name__", str(self.type))


def _describe_msgspec(exc: msgspec.ValidationError) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.amount`": lead with the path.
    text = str(exc)
    if " - at `" in text:
        problem, _, path = text.rpartition(" - at `")
        return f"{path.rstrip('`')}: {problem}"
    return text


def _translate_pydantic(exc: ValueError) -> DecodeError | SchemaError:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return SchemaError(str(exc))
    items = errors()
    if items and items[0].get("type") == "json_invalid":
        return DecodeError(f"not valid JSON: {items[0].get('msg')}")
    parts = []
    for item in items[:3]:
        loc = "$" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in item.get("loc", ())
        )
        parts.append(f"{loc}: {item.get('msg')}")
    return SchemaError("; ".join(parts))
