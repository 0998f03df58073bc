"""Redaction: phone numbers and addresses go, every other number a mail holds stays."""

from __future__ import annotations

import pytest

from engine.memory.redact import redact

SURVIVE = [
    "We traded gas in 2000-2001.",
    "Policy POL-2022-555 covers the stagecoach.",
    "1500 2000 MMBtu at Socal 36,600 37,200 -600 NWPL -51,000 -51,250 250",
    "Kipp Flores-Total Contract was $23,600 but $2,375 was paid; Cuatro- $37,800",
    "Paid $15,000 on 2001-03-12 for lot 4521-22, check #1178 on August 28th.",
    "The 1308/1308 model, 56'Wide X 41' Deep, 12 buildings, 6 or 12 months at $95/month.",
    "October 2000 $1,395,000 November 2000 $1,395,000; estimate 3,000 to 5,000",
    "Invoice 2001-0456-7788, ISBN 0-306-40615-2, policy #CBI420478, extension X37041.",
    "Meet between 10 am and 1 pm on 5/11/00; rows 1-5, 12-20.",
]
PHONES = [
    ("Call me at 713-853-7041.", "Call me at [phone]."),
    ("or +1 (713) 853 7041, or +44 20 7946 0958", "or [phone], or [phone]"),
    ("phone (713)781-5810, fax (713)781-6614", "phone [phone], fax [phone]"),
    ("Direct T: +44 (0)1243 770643", "Direct T: [phone]"),
    ("Home 713-463-8626 Cell 713-410-4679", "Home [phone] Cell [phone]"),
    ("call 281 367 5377 (h)", "call [phone] (h)"),
    ("My cell is 713.410.5396.", "My cell is [phone]."),
]


@pytest.mark.parametrize("text", SURVIVE)
def test_numbers_that_are_not_phones_survive(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(("text", "redacted"), PHONES)
def test_phone_numbers_in_many_formats_are_removed(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def test_addresses_and_switches() -> None:
    text = "mail phillip.allen@enron.com or call 713-853-7041"
    assert redact(text) == "mail [email] or call [phone]"
    assert redact(text, emails=False) == "mail phillip.allen@enron.com or call [phone]"
    assert redact(text, emails=False, phones=False) == text
