"""Can the tiny backbone tell which of two labelled images shows something? A probe, about 10 minutes on 2 cores.

A judge compares candidates by what each one shows, so it must tie content to its label ("Image 2 shows a red
picture"). This trains the tiny model of the tiny-cpu recipe from random weights with ``mmreward tiny see`` on
two labelled solid-colour images per row (four visual tokens each) and reports, on held-out rows, exact-match
accuracy for "Which image shows a red picture?" (``which_image``, chance 0.5) and "What is in image 2?"
(``name_image``, chance 0.5 once it knows the two colours shown), in five runs:

* ``images``: the pictures, from random weights;
* ``text``: the same rows with each picture replaced by its colour words (the lookup alone, no vision);
* ``last``: always "What is in image 2?", the most recent picture (no lookup needed);
* ``warmup``: text-only lookup rows (``mmreward_tiny.curriculum.lookup``, ``train/recipes/tiny-cpu/lookup.yaml``);
* ``images_after_warmup``: the pictures again, starting from the warm-up checkpoint.

    python scripts/probe_binding.py [--out runs/probe_binding] [--warmup-steps 4000]

Prints JSON (and writes ``probe.json`` in ``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmreward_tiny.curriculum.lookup import generate_lookup, generate_solid_pairs  # noqa: E402

RECIPES = REPO / "train" / "recipes" / "tiny-cpu"


def mmreward(args: list, log: Path) -> None:
    cmd = [sys.executable, "-m", "mmreward.cli", *map(str, args)]
    with log.open("w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if code:
        raise SystemExit(f"failed (exit {code}): {' '.join(cmd)}\nsee {log}")


def train(out: Path, name: str, start: Path, data: Path, recipe: str, extra: list) -> dict:
    t0 = time.perf_counter()
    run = out / "runs" / name
    mmreward(
        ["train", "see", "--config", RECIPES / recipe, "--model_name_or_path", start,
         "--chat_files", data / "train.jsonl", "--eval_see", data / "val.jsonl", "--eval_see_limit", 200,
         "--output_dir", run, "--report_to", "none", "--save_steps", 100000, *extra],
        out / f"{name}.log",
    )  # fmt: skip
    summary = json.loads((run / "manifest.json").read_text())["summary"]
    groups = summary["perception"]["groups"]
    result = {k: groups[k]["accuracy"] for k in ("all", "kind=which_image", "kind=name_image") if k in groups}
    result.update(steps=summary["global_step"], seconds=round(time.perf_counter() - t0, 1))
    print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "runs" / "probe_binding"))
    ap.add_argument("--pairs", type=int, default=3000, help="training rows per pair run")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per pair run (5 x 3000 rows = 470 steps)")
    ap.add_argument("--warmup-steps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    sizes = yaml.safe_load((RECIPES / "pipeline.yaml").read_text())["model"]
    model = out / "model"
    init = ["init-tiny", model, "--seed", args.seed]
    for k, v in sizes.items():
        init += [f"--{k.replace('_', '-')}", v]
    mmreward(init, out / "model.log")
    generate_solid_pairs(out / "solid", args.pairs, seed=args.seed)
    generate_lookup(out / "lookup", 20000, seed=args.seed)

    pair = ["--num_train_epochs", args.epochs, "--learning_rate", "1e-3"]
    results = {"model": sizes, "pairs": args.pairs, "epochs": args.epochs}
    for name in ("images", "text", "last"):
        results[name] = train(out, name, model, out / "solid" / name, "see.yaml", pair)
    results["warmup"] = train(out, "warmup", model, out / "lookup", "lookup.yaml", ["--max_steps", args.warmup_steps])
    results["images_after_warmup"] = train(
        out, "images_after_warmup", out / "runs" / "warmup", out / "solid" / "images", "see.yaml", pair
    )
    (out / "probe.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
