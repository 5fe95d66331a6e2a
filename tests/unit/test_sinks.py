"""Print-sink lines, buyer-totals records and DLQ records."""

import base64
from decimal import Decimal

import orjson

from agents.sinks import BuyerTotalsSink, PrintSink, WindowResultsSink
from core.aggregate import TotalChange
from core.models import Total
from core.sinks import buyer_total_records, dlq_value, print_lines


def test_print_lines_in_flinks_format():
    changes = [
        TotalChange(("Ana", "Ruiz"), None, Total(1, Decimal("1.00"))),
        TotalChange(("Zoë", "Brontë"), Total(2, Decimal("3")), Total(5, Decimal("9.5"))),
    ]
    assert print_lines(changes) == ["+I[1, Ana, Ruiz]", "-U[2, Zoë, Brontë]", "+U[5, Zoë, Brontë]"]


def test_buyer_totals_are_keyed_by_the_buyer_with_money_as_text():
    [(key, value)] = buyer_total_records(
        [TotalChange(("Ana", "Ruiz"), None, Total(3, Decimal("12345678901234567890.1")))])
    assert key == b'["Ana","Ruiz"]'
    assert orjson.loads(value) == {"buyer": {"first_name": "Ana", "last_name": "Ruiz"},
                                   "count": 3, "total_price": "12345678901234567890.10"}


def test_dlq_keeps_utf8_as_text_and_other_bytes_as_base64():
    text = orjson.loads(dlq_value("price: negative", "orders", 2, 41, '{"a": "é"}'.encode()))
    assert text == {"error": "price: negative", "topic": "orders", "partition": 2,
                    "offset": 41, "raw": '{"a": "é"}'}
    binary = orjson.loads(dlq_value("value: not UTF-8", "orders", 0, 1, b"\xff\x00"))
    assert binary["raw_encoding"] == "base64"
    assert base64.b64decode(binary["raw"]) == b"\xff\x00"


def test_a_dlq_record_holds_at_most_64_kib_of_the_value_with_its_size_and_hash():
    import hashlib

    value = ("€" * 30_000).encode()  # 90,000 bytes; byte 65,536 is inside the 21,846th "€"
    record = orjson.loads(dlq_value("x", "orders", 0, 7, value))
    assert record["raw"] == "€" * 21_845  # the cut character is dropped, the rest is text
    assert (record["raw_bytes"], record["raw_sha256"]) == (
        90_000, hashlib.sha256(value).hexdigest())
    small = orjson.loads(dlq_value("x", "orders", 0, 7, b"{}"))
    assert "raw_bytes" not in small and small["raw"] == "{}"


def test_a_reason_quoting_a_huge_field_is_cut():
    record = orjson.loads(dlq_value("price: not a decimal like 123.45: '" + "9x" * 50_000,
                                    "orders", 0, 1, b"{}"))
    assert len(record["error"]) == 1_001 and record["error"].endswith("…")


def test_the_sink_objects_records_and_the_print_sink_after_the_commit(capfd):
    changes = [TotalChange(("Ana", "Ruiz"), None, Total(1, Decimal("2.50")))]
    same = BuyerTotalsSink("buyer-totals", lambda partition: partition)
    hashed = BuyerTotalsSink("buyer-totals", lambda partition: None)
    record = (b'["Ana","Ruiz"]', b'{"buyer":{"first_name":"Ana","last_name":"Ruiz"},'
                                 b'"count":1,"total_price":"2.50"}')
    assert same.records(3, changes) == [("buyer-totals", *record, 3)]
    assert hashed.records(3, changes) == [("buyer-totals", *record, None)]
    printer = PrintSink()
    assert printer.records(3, changes) == []
    printer.committed([])
    printer.committed(changes)
    assert capfd.readouterr().out == "+I[1, Ana, Ruiz]\n"
    final = (b'["tumble_10s",0,"Ana","Ruiz"]', b'{"count":1}')
    assert WindowResultsSink("window-results").records([final]) == [
        ("window-results", *final, None)]
