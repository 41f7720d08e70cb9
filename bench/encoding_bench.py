"""What the text analysis of an MT (host.encoding, SPEC O4) costs per call, before and after.

"before" is ``tests/encoding_reference.py`` (the module before its fast paths, verbatim);
"after" is ``host.encoding`` of the checkout given by ``--src`` (this one by default).
Both run in the same process, in turns (``--runs`` rounds), so machine load hits them
alike; each cell is the best round's CPU µs per call (timeit on ``time.process_time``,
``--number`` calls a round).

``segments`` is measured twice: "segments" asks for the same text again, as the send
path does (the plan, then the stored row), and is answered from the bounded memory of
recent texts; "analyse" is the first call for a text (no memory).

    .venv/bin/python bench/encoding_bench.py --runs 3
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent

SENTENCE = "Your code is 482913. It expires in 10 minutes. Do not share it with anyone. "
TEXTS: dict[str, str] = {
    "ascii 20": SENTENCE[:20],
    "ascii 74": SENTENCE[:74],
    "ascii 160": (SENTENCE * 3)[:160],
    "ascii 400 (3 parts)": (SENTENCE * 6)[:400],
    "gsm ext 74 (€[]{})": ("Total: 12€ [ref {A-7}] " * 4)[:74],
    "gsm ext 400 (3 parts)": ("Total: 12€ [ref {A-7}] " * 20)[:400],
    "ucs2 accents 74": ("Ça coûte 12€, à régler avant jeudi. Merci ! " * 2)[:74],
    "ucs2 emoji 74": ("See you at 8 \U0001f600\U0001f389 bring snacks \U0001f44d " * 3)[:74],
    "ucs2 emoji 400 (7 parts)": ("See you at 8 \U0001f600\U0001f389 bring snacks " * 12)[:400],
}
FUNCTIONS = ("segments", "analyse", "detect", "count_units", "truncate", "describe")


def load(src: Path) -> tuple[ModuleType, ModuleType]:
    sys.path[:0] = [str(src), str(HERE.parent)]
    current = importlib.import_module("host.encoding")
    reference = importlib.import_module("tests.encoding_reference")
    return reference, current


def per_call(fn: Callable[..., Any], text: str, number: int) -> float:
    timer = timeit.Timer(lambda: fn(text), timer=time.process_time)  # CPU, not wall
    return timer.timeit(number=number) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--src", type=Path, default=HERE.parent,
                        help="checkout whose host.encoding is 'after'")
    args = parser.parse_args()
    reference, current = load(args.src)
    print(f"after: {current.__file__}")
    print("| text | function | before µs/call | after µs/call | speed-up |")
    print("|---|---|---:|---:|---:|")
    for label, text in TEXTS.items():
        for name in FUNCTIONS:
            old = getattr(reference, "segments" if name == "analyse" else name)
            new = getattr(current, name, None)
            if new is None:  # a checkout without analyse()
                continue
            assert _plain(old(text)) == _plain(new(text)), (label, name)
            before, after = [], []
            for _ in range(args.runs):  # in turns: load changes hit both alike
                before.append(per_call(old, text, args.number))
                after.append(per_call(new, text, args.number))
            b, a = min(before), min(after)
            print(f"| {label} | {name} | {b:.2f} | {a:.2f} | {b / a:.1f}x |")


def _plain(value: Any) -> Any:
    return value.__dict__ if hasattr(value, "__dict__") else value


if __name__ == "__main__":
    main()
