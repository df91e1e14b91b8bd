"""Schema: decode and validate event data, with errors that name the field."""

from __future__ import annotations

import msgspec
import pydantic
import pytest

from scorebus.errors import DecodeError, PermanentError, SchemaError, TooLargeError
from scorebus.events import Schema


class Payment(msgspec.Struct):
    card: str
    amount: float


class Order(msgspec.Struct):
    id: int
    payment: Payment


class PaymentModel(pydantic.BaseModel):
    card: str
    amount: float


def test_struct_schema_decodes_valid_data() -> None:
    schema = Schema(Payment)

    assert schema.decode(b'{"card": "c-1", "amount": 12}') == Payment("c-1", 12.0)
    assert schema.name == "Payment"


def test_struct_schema_wrong_type_names_the_field_path() -> None:
    with pytest.raises(SchemaError) as info:
        Schema(Payment).decode(b'{"card": "c-1", "amount": "12"}')

    assert str(info.value).startswith("$.amount:")
    assert "float" in str(info.value)
    assert info.value.reason == "schema"


def test_struct_schema_nested_wrong_type_names_the_nested_path() -> None:
    with pytest.raises(SchemaError, match=r"^\$\.payment\.amount:"):
        Schema(Order).decode(b'{"id": 1, "payment": {"card": "c", "amount": "x"}}')


def test_struct_schema_missing_field_names_it() -> None:
    with pytest.raises(SchemaError, match="amount"):
        Schema(Payment).decode(b'{"card": "c-1"}')


def test_struct_schema_not_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not valid JSON") as info:
        Schema(Payment).decode(b"card=c-1&amount=12")

    assert info.value.reason == "undecodable"


def test_too_large_is_rejected_before_decoding() -> None:
    schema = Schema(Payment, max_bytes=32)
    raw = b'{"card": "' + b"x" * 40 + b'", "amount": 1}'

    with pytest.raises(TooLargeError, match="over the limit of 32") as info:
        schema.decode(raw)

    assert info.value.reason == "too_large"
    assert schema.decode(b'{"card":"c","amount":1}') == Payment("c", 1.0)


def test_every_schema_failure_is_permanent() -> None:
    for raw in (b"{", b'{"card": 1, "amount": 1}', b"x" * 100):
        with pytest.raises(PermanentError):
            Schema(Payment, max_bytes=50).decode(raw)


def test_struct_schema_convert_validates_decoded_json() -> None:
    schema = Schema(Payment)

    assert schema.convert({"card": "c", "amount": 2}) == Payment("c", 2.0)
    with pytest.raises(SchemaError, match=r"^\$\.amount:"):
        schema.convert({"card": "c", "amount": "two"})


def test_pydantic_schema_decodes_valid_data() -> None:
    schema = Schema(PaymentModel)

    assert schema.decode(b'{"card": "c-1", "amount": 3.5}') == PaymentModel(card="c-1", amount=3.5)
    assert schema.name == "PaymentModel"


def test_pydantic_schema_wrong_type_names_the_field_path() -> None:
    with pytest.raises(SchemaError, match=r"^\$\.amount: "):
        Schema(PaymentModel).decode(b'{"card": "c-1", "amount": "lots"}')


def test_pydantic_schema_missing_field_names_it() -> None:
    with pytest.raises(SchemaError, match=r"\$\.amount: Field required"):
        Schema(PaymentModel).decode(b'{"card": "c-1"}')


def test_pydantic_schema_not_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not valid JSON"):
        Schema(PaymentModel).decode(b"card=c-1")


def test_pydantic_schema_convert() -> None:
    schema = Schema(PaymentModel)

    assert schema.convert({"card": "c", "amount": 1}) == PaymentModel(card="c", amount=1.0)
    with pytest.raises(SchemaError, match=r"\$\.card"):
        schema.convert({"amount": 1})


def test_no_schema_means_plain_json() -> None:
    schema = Schema(None)

    assert schema.decode(b'{"anything": [1, "two", null]}') == {"anything": [1, "two", None]}
    assert schema.decode(b"42") == 42
    assert schema.convert({"k": "v"}) == {"k": "v"}
    assert schema.name == "json"
    with pytest.raises(DecodeError):
        schema.decode(b"{'single': 'quotes'}")
