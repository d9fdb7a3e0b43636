"""The SAS emoji table (``m.sas.v1``, method ``emoji``), as the spec defines it.

Index ``n`` of :data:`EMOJI_TABLE` is the emoji for the 6-bit number ``n``.
The descriptions are the spec's English names; clients show them next to
the emoji so that users compare words, not glyphs that render differently.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Emoji:
    """One SAS emoji: the symbol and its description from the spec's table."""

    symbol: str
    description: str


_RAW: tuple[tuple[str, str], ...] = (
    ("🐶", "Dog"),  # 0
    ("🐱", "Cat"),  # 1
    ("🦁", "Lion"),  # 2
    ("🐎", "Horse"),  # 3
    ("🦄", "Unicorn"),  # 4
    ("🐷", "Pig"),  # 5
    ("🐘", "Elephant"),  # 6
    ("🐰", "Rabbit"),  # 7
    ("🐼", "Panda"),  # 8
    ("🐓", "Rooster"),  # 9
    ("🐧", "Penguin"),  # 10
    ("🐢", "Turtle"),  # 11
    ("🐟", "Fish"),  # 12
    ("🐙", "Octopus"),  # 13
    ("🦋", "Butterfly"),  # 14
    ("🌷", "Flower"),  # 15
    ("🌳", "Tree"),  # 16
    ("🌵", "Cactus"),  # 17
    ("🍄", "Mushroom"),  # 18
    ("🌏", "Globe"),  # 19
    ("🌙", "Moon"),  # 20
    ("☁️", "Cloud"),  # 21
    ("🔥", "Fire"),  # 22
    ("🍌", "Banana"),  # 23
    ("🍎", "Apple"),  # 24
    ("🍓", "Strawberry"),  # 25
    ("🌽", "Corn"),  # 26
    ("🍕", "Pizza"),  # 27
    ("🎂", "Cake"),  # 28
    ("❤️", "Heart"),  # 29
    ("😀", "Smiley"),  # 30
    ("🤖", "Robot"),  # 31
    ("🎩", "Hat"),  # 32
    ("👓", "Glasses"),  # 33
    ("🔧", "Spanner"),  # 34
    ("🎅", "Santa"),  # 35
    ("👍", "Thumbs Up"),  # 36
    ("☂️", "Umbrella"),  # 37
    ("⌛", "Hourglass"),  # 38
    ("⏰", "Clock"),  # 39
    ("🎁", "Gift"),  # 40
    ("💡", "Light Bulb"),  # 41
    ("📕", "Book"),  # 42
    ("✏️", "Pencil"),  # 43
    ("📎", "Paperclip"),  # 44
    ("✂️", "Scissors"),  # 45
    ("🔒", "Lock"),  # 46
    ("🔑", "Key"),  # 47
    ("🔨", "Hammer"),  # 48
    ("☎️", "Telephone"),  # 49
    ("🏁", "Flag"),  # 50
    ("🚂", "Train"),  # 51
    ("🚲", "Bicycle"),  # 52
    ("✈️", "Aeroplane"),  # 53
    ("🚀", "Rocket"),  # 54
    ("🏆", "Trophy"),  # 55
    ("⚽", "Ball"),  # 56
    ("🎸", "Guitar"),  # 57
    ("🎺", "Trumpet"),  # 58
    ("🔔", "Bell"),  # 59
    ("⚓", "Anchor"),  # 60
    ("🎧", "Headphones"),  # 61
    ("📁", "Folder"),  # 62
    ("📌", "Pin"),  # 63
)

#: The 64 SAS emoji, indexed by their 6-bit number.
EMOJI_TABLE: tuple[Emoji, ...] = tuple(Emoji(symbol, name) for symbol, name in _RAW)


def emoji_for(index: int) -> Emoji:
    """Return the emoji for a 6-bit number.

    Raises:
        ValueError: if ``index`` is not in ``0..63``.
    """
    if not 0 <= index < len(EMOJI_TABLE):
        raise ValueError(f"emoji index out of range: {index}")
    return EMOJI_TABLE[index]
