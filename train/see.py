"""Stage 0 for the embedded default: teach a randomly initialised tiny backbone to see, on the synthetic world's
captions and questions about whole images, crops and frames (``data_pipelines.synthetic.see``), before it learns to
judge. It stands in for the pretraining a real Qwen-VL checkpoint already has. Same trainer as :mod:`train.sft`
(``see_files`` instead of ``train_files``).

    mmreward train see --config train/recipes/tiny-cpu/see.yaml
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from train.sft import main as sft_main


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def evaluate_see(model, processor, path: str, limit: int | None = 300, batch_size: int = 16) -> dict:
    """Perception accuracy on held-out learning-to-see questions: greedy answers, exact match after lower-casing
    and dropping punctuation, overall and by view (whole image, crop, frame, frame pair) and level."""
    from PIL import Image  # noqa: PLC0415

    from mmreward.rollout import GenerationRequest, SamplingSettings, TransformersGenerator  # noqa: PLC0415

    root = Path(path).parent
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()][:limit]
    model.eval()
    gen = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=24, temperature=0.0))
    groups: dict[str, list[bool]] = defaultdict(list)
    examples = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        requests = []
        for r in chunk:
            images = [Image.open(root / p).convert("RGB") for p in r["images"]]
            content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": r["question"]}]
            requests.append(GenerationRequest(r["id"], 0, [{"role": "user", "content": content}], images, None, 24))
        for r, out in zip(chunk, gen.generate(requests)):
            ok = _norm(out.text) == _norm(r["answer"])
            for g in ("all", f"view={r.get('view')}", f"level={r.get('level')}"):
                groups[g].append(ok)
            if len(examples) < 8:
                examples.append({"question": r["question"], "answer": r["answer"], "model": out.text, "ok": ok})
    return {
        "accuracy": round(sum(groups["all"]) / max(1, len(groups["all"])), 4),
        "items": len(rows),
        "groups": {k: {"accuracy": round(sum(v) / len(v), 4), "n": len(v)} for k, v in sorted(groups.items())},
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> int:
    return sft_main(argv, stage="see")


if __name__ == "__main__":
    sys.exit(main())
