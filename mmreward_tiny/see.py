"""Stage 0 for the embedded default: teach a randomly initialised tiny backbone to see, on the synthetic world's
captions and questions about whole images, crops and frames (``mmreward_tiny.curriculum.questions``), before it
learns to judge. It stands in for the pretraining a real Qwen-VL checkpoint already has. The trainer is
:mod:`train.sft` on ``chat_files``; this adds the perception evaluation on held-out questions (``eval_see``).

    mmreward tiny see --config train/recipes/tiny-cpu/see.yaml
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from data_pipelines.synthetic.oracle import MATCH_PHRASES
from mmreward_tiny.curriculum.diagnose import FINDING
from train import sft
from train.render import chat_row_content


@dataclass
class SeeArguments:
    """Stage 0's own options, beside the SFT trainer's."""

    eval_see: str | None = field(
        default=None, metadata={"help": "held-out learning-to-see JSONL: perception accuracy at the end"}
    )
    eval_see_limit: int | None = field(default=300, metadata={"help": "judge only the first N held-out rows"})


def _norm(text: str) -> str:
    # The oracle words "it matches" three ways (a comparison row's answer may use any): count them as one.
    for phrase in MATCH_PHRASES[1:]:
        text = text.replace(phrase, MATCH_PHRASES[0])
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


# What a learning-to-see question asks, from its wording (mmreward_tiny.curriculum.questions writes these forms).
QUESTION_KINDS = (
    ("locate", re.compile(r"^(Where are the objects|Locate the objects)")),
    ("where", re.compile(r"^Where is the ")),
    ("colour", re.compile(r"^What colour is the ")),
    ("shape", re.compile(r"^What shape is the ")),
    ("count", re.compile(r"^How many ")),
    ("change", re.compile(r"^What changes between")),
    ("name_image", re.compile(r"^What is in (image|video|Answer) \d")),
    ("which_image", re.compile(r"^Which (image|video|answer) shows ")),
    ("compare", re.compile(r"^What do you see, and does it match the prompt")),
)
_BOX = re.compile(r"crop box \[(\d+), (\d+), (\d+), (\d+)\]")


def question_kind(question: str) -> str:
    """The kind of the question's last line (text-only lookup rows put their labelled items above it)."""
    question = question.rsplit("\n", 1)[-1]
    for kind, pattern in QUESTION_KINDS:
        if pattern.search(question):
            return kind
    return "caption"


def match_calls_right(row: dict, text: str) -> list[bool]:
    """For a comparison row (``mmreward_tiny.curriculum.compare``): per crop, whether the answer's match / no-match
    call about it is right, whatever else it says. A crop the answer says nothing about counts as wrong."""
    calls = {obs: not call.startswith("But") for obs, _, _, call in FINDING.findall(text + " ")}
    # The crops in the order the reference answer speaks of them (a one-crop row may be about obs_2).
    crops = [obs for obs, _, _, _ in FINDING.findall(row.get("answer", "") + " ")]
    if len(crops) != len(row["match"]):
        crops = [f"obs_{k}" for k in range(1, len(row["match"]) + 1)]
    return [calls.get(obs) == truth for obs, truth in zip(crops, row["match"])]


def _box_iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _centre_error(a: list[int], b: list[int]) -> float:
    """Distance between the two boxes' centres, in the 0-1000 coordinates of the crop tool."""
    return (((a[0] + a[2] - b[0] - b[2]) / 2) ** 2 + ((a[1] + a[3] - b[1] - b[3]) / 2) ** 2) ** 0.5


def locate_metrics(pairs: list[tuple[list[int], list[int] | None]]) -> dict:
    """How well predicted crop boxes find the objects, beside a baseline that always says the same box (the mean
    true box): a model whose centre error is no better than the baseline's has not learned where things are.
    ``pairs`` are (true box, predicted box or None when the answer has no box)."""
    if not pairs:
        return {}
    truth = [t for t, _ in pairs]
    mean_box = [round(sum(b[i] for b in truth) / len(truth)) for i in range(4)]
    errors = sorted(_centre_error(t, p) if p else 1000.0 for t, p in pairs)
    base = sorted(_centre_error(t, mean_box) for t in truth)
    return {
        "n": len(pairs),
        "box_found": round(sum(p is not None for _, p in pairs) / len(pairs), 4),
        "mean_iou": round(sum(_box_iou(t, p) if p else 0.0 for t, p in pairs) / len(pairs), 4),
        "median_centre_error": round(errors[len(errors) // 2], 1),
        "constant_box_median_centre_error": round(base[len(base) // 2], 1),
        "constant_box_mean_iou": round(sum(_box_iou(t, mean_box) for t in truth) / len(truth), 4),
    }


def visual_contrast(model, processor, images: list) -> float | None:
    """How different the projector's image tokens are from each other, averaged over ``images``: for each image,
    the largest distance of a token from the median token, relative to the median token's norm.

    On the synthetic world's plain backgrounds most tokens are background, so this is the contrast an object has
    against it by the time it reaches the language model. A random-weight tiny model starts near 0.2; a model
    whose image features collapsed to a constant (observed in stage 0 on overview views: 0.001) passes the
    language model no visual information at all, whatever its loss says."""
    import torch  # noqa: PLC0415

    inner = getattr(model, "model", model)
    if not images or not hasattr(inner, "get_image_features"):
        return None
    values = []
    with torch.no_grad():
        for im in images:
            batch = processor.image_processor(images=[im], return_tensors="pt")
            out = inner.get_image_features(
                batch["pixel_values"].to(model.device), image_grid_thw=batch["image_grid_thw"].to(model.device)
            )
            feats = getattr(out, "pooler_output", out)
            feats = feats[0] if isinstance(feats, (tuple, list)) else feats
            feats = feats.float()
            median = feats.median(0).values
            values.append(float((feats - median).norm(dim=1).max() / median.norm().clamp_min(1e-9)))
    return round(sum(values) / len(values), 4)


def evaluate_see(model, processor, path: str, limit: int | None = 300, batch_size: int = 16) -> dict:
    """Perception on held-out learning-to-see questions: greedy answers, exact match after lower-casing and dropping
    punctuation, overall and by view (whole image, labelled image pair, crop, frame, overview, frame pair), level and question kind;
    for locating questions also the crop-box error beside a constant-box baseline (:func:`locate_metrics`); and
    the projector's object/background contrast on overview images (:func:`visual_contrast`)."""
    from PIL import Image  # noqa: PLC0415

    from mmreward.generators import GenerationRequest, SamplingSettings, TransformersGenerator  # noqa: PLC0415

    root = Path(path).parent
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()][:limit]
    model.eval()
    # Room for the longest reference answer (learning-to-see answers take up to 34 tokens, comparison rows about 90).
    longest = max((len(processor.tokenizer(r["answer"])["input_ids"]) for r in rows), default=0)
    max_new_tokens = max(40, longest + 8)
    gen = TransformersGenerator(model, processor, SamplingSettings(max_new_tokens=max_new_tokens, temperature=0.0))
    groups: dict[str, list[bool]] = defaultdict(list)
    boxes: list[tuple[list[int], list[int] | None]] = []
    overview_images = []
    examples = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        requests = []
        for r in chunk:
            images = [Image.open(root / p).convert("RGB") for p in r["images"]]
            if r.get("view") == "overview" and len(overview_images) < 16:
                overview_images.append(images[0])
            content = chat_row_content(r, images)
            requests.append(
                GenerationRequest(r["id"], 0, [{"role": "user", "content": content}], images, None, max_new_tokens)
            )
        for r, out in zip(chunk, gen.generate(requests)):
            ok = _norm(out.text) == _norm(r["answer"])
            kind = question_kind(r["question"])
            for g in ("all", f"view={r.get('view')}", f"level={r.get('level')}", f"kind={kind}"):
                groups[g].append(ok)
            if "match" in r:
                groups["compare_match_call"] += match_calls_right(r, out.text)
            truth = _BOX.search(r["answer"])
            if kind == "locate" and truth:
                said = _BOX.search(out.text)
                boxes.append(([int(x) for x in truth.groups()], [int(x) for x in said.groups()] if said else None))
            if len(examples) < 8:
                examples.append({"question": r["question"], "answer": r["answer"], "model": out.text, "ok": ok})
    result = {
        "accuracy": round(sum(groups["all"]) / max(1, len(groups["all"])), 4),
        "items": len(rows),
        "groups": {k: {"accuracy": round(sum(v) / len(v), 4), "n": len(v)} for k, v in sorted(groups.items())},
        "examples": examples,
    }
    if boxes:
        result["locate"] = locate_metrics(boxes)
    contrast = visual_contrast(model, processor, overview_images)
    if contrast is not None:
        result["visual_contrast"] = contrast
    return result


def main(argv: list[str] | None = None) -> int:
    script, see, cfg, model_args = sft.parse(argv, "see", extra=(SeeArguments,))
    script.stage = "see"
    sft.setup_logging()
    evaluations = {}
    if see.eval_see:
        evaluations["perception"] = lambda model, processor: evaluate_see(
            model, processor, see.eval_see, see.eval_see_limit
        )
    sft.run(script, cfg, model_args, evaluations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
