"""Web-like documents with planted PII of every default type, plus the edge cases where a
naive window would change Presidio's answer (see pipeline/stages/pii/windows.py)."""

from __future__ import annotations

import random

SENTENCES = [
    "The committee met on 2024-03-15 to review 17 proposals and 3 budgets.",
    "Version 3.11.7 fixed 42 bugs; see issue #10234 for the details.",
    "Our office hours are 9:30 to 17:00, Monday through Friday.",
    "Temperatures reached 31.5 degrees in July 2023, a record since 1881.",
    "Order 55 units at 19.99 each before the deadline of 12/31/2025.",
    "The library has 1,250,000 volumes and 2,400 journals.",
    "Posted by admin | 14 comments | Share this page",
    "Zurück zur Startseite. Die Lieferung dauert 3 bis 5 Werktage.",
    "本店营业时间为上午九点至下午六点，电话预约优先。",
]

PII = {
    "EMAIL_ADDRESS": ["jane.doe@example.com", "support+tickets@mail.example.org", "x.john@example.co.uk"],
    "PHONE_NUMBER": [
        "(212) 555-0147",
        "+44 20 7946 0958",
        "+49 30 901820",
        "212-555-0199",
        "030 901820",
        "0431 35 06 90",  # the extended recognizers' formats, some found only next to a phone word
        "(11) 4706-6184",
        "+1-962-819-8200x123",
    ],
    "IP_ADDRESS": ["192.168.10.25", "10.0.0.1", "2001:db8:85a3::8a2e:370:7334", "::ffff:192.0.2.128"],
    "CREDIT_CARD": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "2221 0000 0000 0009"],
    "IBAN_CODE": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "fr1420041010050500013m02606"],
    "US_SSN": ["078-05-1121", "219 09 9999", "536-22-1234"],
}

EDGE_CASES = [
    "nums 1234 4111 1111 1111 1111 end",
    "id abc8005001234 x",
    "contact x.john@example.com today",
    "call 212-555-0147 now",
    "8005001234",
    "ext. 212 555 0147 ext 12",
    "IPs 1.2.3.4.5 and 999.1.1.1 and ::1 and fe80::1%eth0",
    "Tel:+1-212-555-0147,office",
    "dates 2021-11-05 2021/11/05 05.11.2021 and 1999-2004",
    "price 1640 EUR, code 01640, 1690",
    "IBAN: DE89370400440532013000 BIC COBADEFFXXX",
    "mixed 078-05 1121 and 111-11-1111",
    "Suite 680 36 4022 Oakridge Lane; driver's license number is 425700624; PSC 9236, Box 1684",
    "call our friendly support office later at 785 8949, or 0487 23 46 71 (mobile)",
]


def planted_documents(n: int = 150, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = list(EDGE_CASES)
    entities = sorted(PII)
    while len(docs) < n:
        lines = [rng.choice(SENTENCES) for _ in range(rng.randint(2, 8))]
        for _ in range(rng.randint(0, 3)):
            entity = rng.choice(entities)
            value = rng.choice(PII[entity])
            template = rng.choice(["Contact: {}", "reach me at {} anytime", "{}", "({}).", "ref={};"])
            position = rng.randrange(len(lines) + 1)
            if rng.random() < 0.5 and lines:
                lines[min(position, len(lines) - 1)] += " " + template.format(value)
            else:
                lines.insert(position, template.format(value))
        docs.append(rng.choice(["\n", " ", "\n\n"]).join(lines))
    return docs
