"""host.config.secrets.redact: every form of a secret masked, the RE2 screen that
skips texts holding none changing nothing (each text redacted as ``re`` alone does)."""

from __future__ import annotations

import base64
import html
import json
import random
import string
from urllib.parse import quote, quote_plus

import pytest

from host.config.secrets import MASK, _pattern, redact

SECRETS = ["0123456789abcdef0123456789abcdef", "s3cr3t-auth token/0123+x",
           'pass word"x\\y', "Kskey", "abc", "é-secret-ü", "a"]


def forms(secret: str) -> list[str]:
    """The secret as a server may echo it (host.config.secrets.redact's list)."""
    data = secret.encode()
    return [secret, secret.upper(), quote(secret), quote_plus(secret),
            json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
            html.escape(secret), "".join(f"&#{ord(c)};" for c in secret),
            base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode(),
            data.hex(), data.decode("latin-1"),
            secret.replace("k", "\u212a").replace("s", "\u017f")]  # Kelvin, long s


@pytest.mark.parametrize("secret", SECRETS)
def test_redact_masks_as_re_alone_does(secret: str) -> None:
    rnd = random.Random(secret)
    noise = string.printable + "éK\u212a"
    for form in forms(secret):
        for _ in range(10):
            text = "".join(rnd.choice(noise) for _ in range(rnd.randint(0, 30))) + form + \
                "".join(rnd.choice(noise) for _ in range(rnd.randint(0, 30)))
            assert redact(text, [secret]) == _pattern(secret).sub(MASK, text), text
        if len(secret.encode()) >= 4:  # the hex of a shorter one is any small number
            assert MASK in redact(f"x={form}&y=1", [secret])


def test_a_text_without_the_secret_is_returned_as_it_is() -> None:
    body = "ToCountry=US&Body=T123+hello&MessageSid=SM" + "c" * 32 + "&From=%2B1202555"
    assert redact(body, SECRETS[:4]) == body


def test_a_text_with_a_lone_surrogate_is_still_redacted() -> None:
    """RE2 reads UTF-8 only: such a text is left to ``re``."""
    secret = "0123456789abcdef"
    assert redact(f"\ud800 key={secret}", [secret]) == f"\ud800 key={MASK}"
