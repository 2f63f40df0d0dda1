"""Test scaffolding: a generator that replays given turns, to drive the engine's tool loop without a model."""

from __future__ import annotations

from collections.abc import Callable

from mmreward.generators import GenerationOutput, GenerationRequest


class ScriptedGenerator:
    """Replays given turns: ``script[key]`` is the list of turn texts for trajectory ``key`` (or a callable
    ``(request) -> str``). Used to test the tool loop and by rule-based teachers."""

    def __init__(self, script: dict[str, list[str]] | Callable[[GenerationRequest], str]) -> None:
        self.script = script
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationOutput]:
        outs = []
        for r in requests:
            self.requests.append(r)
            if callable(self.script):
                text = self.script(r)
            else:
                turns = self.script.get(r.key, [])
                text = turns[r.turn] if r.turn < len(turns) else ""
            outs.append(GenerationOutput(text=text, prompt_tokens=0, completion_tokens=len(text.split())))
        return outs
