"""Deterministic synthetic captioned scenes: coloured shapes on plain or textured backgrounds.

They train the embedded demo CLIP (``tools/train_demo_clip.py``), give ``imgsearch model eval``
a held-out set with known answers, and fill the demo bucket. Each image holds one kind of
object (a colour and a shape), one to three times::

    from imgsearch_devkit.demo.scenes import caption, describes, generate

    pairs = generate(400, seed=7)               # [(PIL.Image, Scene)], every kind ~10 times
    image, scene = pairs[0]
    caption(scene, np.random.default_rng(0))    # "two small blue triangles on a grey background"
    describes(scene, "blue triangle")           # True: the query's words agree with the scene

Shapes are drawn inside the centred square of the image, so CLIP's short-side resize and centre
crop never cut them off. Background colours are never shape colours.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "red": (215, 25, 30),
    "orange": (250, 135, 0),
    "yellow": (245, 225, 20),
    "green": (30, 160, 45),
    "cyan": (0, 200, 215),
    "blue": (25, 70, 220),
    "purple": (125, 35, 175),
    "pink": (250, 130, 200),
}
"""Shape colours: hues far apart, none of them a background colour."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
PLURALS: dict[str, str] = {
    shape: shape + ("es" if shape.endswith("s") else "s") for shape in SHAPES
}

BACKGROUNDS: dict[str, RGB] = {
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
    "black": (25, 25, 25),
    "beige": (220, 205, 175),
}
"""Background colours: neutral, so a shape's colour is never confused with its background."""

TEXTURES: dict[str, str] = {
    "plain": "plain",
    "stripes": "striped",
    "checker": "checkered",
    "noise": "noisy",
}
"""Texture -> the adjective captions use."""

SIZES: dict[str, float] = {"small": 0.10, "large": 0.17}
"""Size name -> shape radius as a fraction of the centred square's side."""

POSITIONS: dict[str, tuple[float, float, str]] = {
    "left": (0.25, 0.5, "on the left"),
    "right": (0.75, 0.5, "on the right"),
    "top": (0.5, 0.25, "at the top"),
    "bottom": (0.5, 0.75, "at the bottom"),
    "centre": (0.5, 0.5, "in the centre"),
}
"""Where a single shape sits: centre (x, y) as fractions of the square, and the caption phrase."""

COUNT_WORDS = ("one", "two", "three")
KINDS: tuple[tuple[str, str], ...] = tuple(itertools.product(COLOURS, SHAPES))
"""Every (colour, shape) kind, in the order the balanced generator cycles through them."""

DEFAULT_SIZE = (192, 160)
"""Width x height of rendered images: not square, so the centre crop has work to do."""

_PREFIXES = ("", "", "", "a picture of ", "an image of ", "a photo of ")


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one image; ``render`` draws exactly this, nothing random."""

    colour: str
    shape: str
    count: int
    size: str
    background: str
    texture: str
    centres: tuple[tuple[float, float], ...]
    """Shape centres as fractions of the centred square's side."""
    rgb: RGB
    """The shape colour actually drawn: the named colour with a little jitter."""
    position: str | None = None
    """For a single shape: one of ``POSITIONS``; ``None`` when there are several."""
    texture_seed: int = 0

    @property
    def kind(self) -> tuple[str, str]:
        return self.colour, self.shape


def _jitter(rgb: RGB, rng: np.random.Generator, spread: int) -> RGB:
    values = np.clip(np.asarray(rgb) + rng.integers(-spread, spread + 1, size=3), 0, 255)
    return (int(values[0]), int(values[1]), int(values[2]))


def _place(count: int, radius: float, rng: np.random.Generator) -> tuple[tuple[float, float], ...]:
    """Non-overlapping centres inside the square (rejection sampling, always terminates)."""
    margin = radius + 0.04
    for _ in range(1000):
        centres = [tuple(rng.uniform(margin, 1 - margin, size=2)) for _ in range(count)]
        if all(math.dist(a, b) > 2.5 * radius for a, b in itertools.combinations(centres, 2)):
            return tuple((round(float(x), 4), round(float(y), 4)) for x, y in centres)
    raise RuntimeError(f"cannot place {count} shapes of radius {radius}")  # pragma: no cover


def random_scene(
    rng: np.random.Generator, colour: str | None = None, shape: str | None = None
) -> Scene:
    """A random scene; ``colour`` and ``shape`` fix the kind (else it is random too)."""
    colour = colour or str(rng.choice(list(COLOURS)))
    shape = shape or str(rng.choice(SHAPES))
    if colour not in COLOURS or shape not in SHAPES:
        raise ValueError(f"unknown kind {colour!r} {shape!r}")
    count = int(rng.integers(1, 4))
    size = str(rng.choice(list(SIZES)))
    radius = SIZES[size]
    position = None
    if count == 1:
        position = str(rng.choice(list(POSITIONS)))
        x, y, _ = POSITIONS[position]
        # Pull towards the middle so that a large shape still fits, then jitter a little.
        x, y = (0.5 + (v - 0.5) * (1 - 2 * radius) / 0.6 for v in (x, y))
        dx, dy = rng.uniform(-0.04, 0.04, size=2)
        centres = ((round(float(x + dx), 4), round(float(y + dy), 4)),)
    else:
        centres = _place(count, radius, rng)
    return Scene(
        colour=colour,
        shape=shape,
        count=count,
        size=size,
        background=str(rng.choice(list(BACKGROUNDS))),
        texture=str(rng.choice(list(TEXTURES))),
        centres=centres,
        rgb=_jitter(COLOURS[colour], rng, 12),
        position=position,
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _background(scene: Scene, width: int, height: int) -> Image.Image:
    base = np.asarray(BACKGROUNDS[scene.background], dtype=np.float32)
    # The second tone moves towards mid-grey so that textures stay neutral on any background.
    other = base + np.sign(128 - base + 0.5) * 45
    rng = np.random.default_rng(scene.texture_seed)
    ys, xs = np.mgrid[0:height, 0:width]
    if scene.texture == "stripes":
        period = int(rng.integers(8, 20))
        angle = float(rng.uniform(0, math.pi))
        phase = (xs * math.cos(angle) + ys * math.sin(angle)) // (period / 2)
        mask = (phase % 2).astype(bool)
    elif scene.texture == "checker":
        cell = int(rng.integers(8, 20))
        mask = ((xs // cell + ys // cell) % 2).astype(bool)
    else:
        mask = np.zeros((height, width), dtype=bool)
    pixels = np.where(mask[..., None], other, base)
    if scene.texture == "noise":
        pixels = pixels + rng.normal(0, 25, size=(height, width, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [
            (cx + r * math.cos(a), cy + r * math.sin(a))
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    if shape == "star":
        return [
            (
                cx + (r if i % 2 == 0 else r * 0.42) * math.cos(-math.pi / 2 + i * math.pi / 5),
                cy + (r if i % 2 == 0 else r * 0.42) * math.sin(-math.pi / 2 + i * math.pi / 5),
            )
            for i in range(10)
        ]
    if shape == "cross":
        t = r * 0.32
        return [
            (cx - t, cy - r),
            (cx + t, cy - r),
            (cx + t, cy - t),
            (cx + r, cy - t),
            (cx + r, cy + t),
            (cx + t, cy + t),
            (cx + t, cy + r),
            (cx - t, cy + r),
            (cx - t, cy + t),
            (cx - r, cy + t),
            (cx - r, cy - t),
            (cx - t, cy - t),
        ]
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    """Draw the scene as an RGB image of ``size`` (width, height)."""
    width, height = size
    image = _background(scene, width, height)
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    r = SIZES[scene.size] * side
    for fx, fy in scene.centres:
        cx, cy = left + fx * side, top + fy * side
        if scene.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=scene.rgb)
        else:
            draw.polygon(_polygon(scene.shape, cx, cy, r), fill=scene.rgb)
    return image


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A templated, true caption; ``rng`` picks which details it mentions and how."""
    noun = scene.shape if scene.count == 1 else PLURALS[scene.shape]
    words = [scene.colour, noun]
    if rng.random() < 0.5:
        words.insert(0, scene.size)
    if scene.count > 1 and rng.random() < 0.8:
        words.insert(0, COUNT_WORDS[scene.count - 1])
    elif scene.count == 1 and rng.random() < 0.6:
        words.insert(0, str(rng.choice(["one", "an" if words[0][0] in "aeiou" else "a"])))
    text = " ".join(words)
    if scene.position and rng.random() < 0.4:
        text += " " + POSITIONS[scene.position][2]
    if rng.random() < 0.5:
        texture = TEXTURES[scene.texture] + " " if rng.random() < 0.5 else ""
        text += f" on a {texture}{scene.background} background"
    return str(rng.choice(_PREFIXES)) + text


WORDS: frozenset[str] = frozenset(
    " ".join(
        [
            *COLOURS,
            *SHAPES,
            *PLURALS.values(),
            *BACKGROUNDS,
            *TEXTURES.values(),
            *SIZES,
            *COUNT_WORDS,
            *(p[2] for p in POSITIONS.values()),
            *_PREFIXES,
            "a an on background",
        ]
    ).split()
)
"""Every word ``caption`` can write (the demo tokenizer's vocabulary)."""

_SINGULAR = {shape: shape for shape in SHAPES} | {p: s for s, p in PLURALS.items()}
_POSITION_WORDS = {
    "left": "left",
    "right": "right",
    "top": "top",
    "bottom": "bottom",
    "centre": "centre",
    "center": "centre",
}
_TEXTURE_WORDS = {adjective: texture for texture, adjective in TEXTURES.items()}


def requirements(text: str) -> dict[str, frozenset[object]]:
    """What ``text`` says about a scene: ``Scene`` field -> the values it allows.

    Words that name no attribute are ignored. A bare shape noun names the kind ("red circle"
    holds for one, two or three red circles); a plural means several, "a"/"an"/"one" exactly one;
    sizes, colours (of shapes or of the background), textures and positions must all agree::

        requirements("two red circles")   # {"colour": {"red"}, "count": {2}, "shape": {"circle"}}
    """
    found: dict[str, set[object]] = {}

    def allow(field: str, *values: object) -> None:
        # A contradictory text ("red blue circle") allows nothing, so it describes no scene.
        found[field] = found[field] & set(values) if field in found else set(values)

    words = text.lower().split()
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        previous = words[index - 1] if index else ""
        if word in COLOURS:
            allow("colour", word)
        elif word in BACKGROUNDS:
            allow("background", word)
        elif word in _SINGULAR:
            allow("shape", _SINGULAR[word])
            if word not in SHAPES:
                allow("count", 2, 3)
        elif word in COUNT_WORDS:
            allow("count", COUNT_WORDS.index(word) + 1)
        elif word in ("a", "an") and (following in SIZES or following in COLOURS):
            allow("count", 1)
        elif word in SIZES:
            allow("size", word)
        elif word in _TEXTURE_WORDS:
            allow("texture", _TEXTURE_WORDS[word])
        elif word in _POSITION_WORDS and previous == "the":
            allow("position", _POSITION_WORDS[word])
    return {field: frozenset(values) for field, values in found.items()}


def describes(scene: Scene, text: str) -> bool:
    """Whether everything ``text`` says holds for ``scene`` (see ``requirements``)."""
    return all(getattr(scene, field) in allowed for field, allowed in requirements(text).items())


def generate(
    n: int,
    seed: int,
    balanced: bool = True,
    size: tuple[int, int] = DEFAULT_SIZE,
) -> list[tuple[Image.Image, Scene]]:
    """``n`` rendered scenes, the same for the same arguments.

    ``balanced`` cycles through ``KINDS`` (then shuffles), so every kind appears ``n // len(KINDS)``
    or one more times; otherwise each kind is drawn at random.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    if balanced:
        kinds = [KINDS[i % len(KINDS)] for i in range(n)]
        rng.shuffle(kinds)  # type: ignore[arg-type]
    else:
        kinds = [KINDS[int(i)] for i in rng.integers(0, len(KINDS), size=n)]
    scenes = [random_scene(rng, colour, shape) for colour, shape in kinds]
    return [(render(scene, size), scene) for scene in scenes]
