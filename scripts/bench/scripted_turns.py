"""A real model's work on every turn with scripted text, for benches of multi-turn judging: a random-weight
model never writes a tool call, so without this its trajectories end after one turn and no cache is reused."""

from __future__ import annotations


class ToolTurns:
    """The tiny model's real work for every turn (``min_tokens = max_tokens``, so each turn decodes the same number
    of tokens), with scripted text so that every trajectory really goes on through tool turns: two crops (real
    observations, appended to the real context), then a verdict. Only how each turn's context is encoded differs
    between the generators compared: all of it again, or only what the turn appended (cache reuse)."""

    def __init__(self, gen, calls: int = 2) -> None:
        self.gen, self.calls = gen, calls

    @property
    def sampling(self):
        return self.gen.sampling

    @sampling.setter
    def sampling(self, value) -> None:
        self.gen.sampling = value

    def generate(self, requests):
        from mmreward.protocol import format_turn

        outs = self.gen.generate(requests)
        for r, o in zip(requests, outs):
            if r.turn < self.calls:
                box = [0, 0, 500 + 200 * r.turn, 600]
                o.text = format_turn(
                    "look closer", tool=("crop", {"image": f"image_{r.turn % 2 + 1}", "bbox_2d": box})
                )
            else:
                o.text = format_turn("decided", answer="Image 1 is better")
        return outs

    def release(self, key: str) -> None:
        self.gen.release(key)
