"""The synthetic visual preference world: deterministic, split-respecting, and built so that the items flagged
"needs a tool" really cannot be judged from the overview while the tools make them easy."""

import json
import random
import re
from collections import Counter, defaultdict

import pytest
from PIL import Image

from data_pipelines.labels import check_verdict
from data_pipelines.records import read_records
from data_pipelines.synthetic.generate import (
    SHAPE_PX,
    WORLD_TOOLS,
    WORLD_VISUAL,
    WorldConfig,
    generate_world,
    pointwise_score,
)
from data_pipelines.synthetic.oracle import OracleTeacher, shapes_readable
from data_pipelines.synthetic.perception import perceive
from data_pipelines.synthetic.world import HELD_OUT, NUMBER_WORDS, PLURAL, Description, Scene, layout, render
from mmreward.media import open_video, sample_frame_indices
from mmreward.protocol import parse_turn
from mmreward.rollout import RolloutEngine
from mmreward.settings import EngineSettings
from mmreward_tiny.curriculum.questions import generate_see, read_see

SPLITS = {"train": 60, "val": 8, "test": 150, "compositional": 40}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    manifest = generate_world(out, seed=3, splits=SPLITS)
    # The tiny model's curriculum, beside the world as the pipeline puts it.
    manifest["see"] = generate_see(out / "see", n=60, seed=3)
    return out, manifest


@pytest.fixture(scope="module")
def oracle_runs(world):
    """The oracle on the test split, with tools and from the overview alone, in random presented orders."""
    out, _ = world
    records = read_records(out / "test.jsonl")
    engine = RolloutEngine(
        OracleTeacher({r.id: r for r in records}),
        settings=EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS, verdict_mode="strict"),
    )
    rng = random.Random(0)
    orders = [[0] if r.task == "pointwise" else rng.sample([0, 1], 2) for r in records]
    tasks = [r.to_task(out) for r in records]
    keys = [f"{r.id}|x" for r in records]
    runs = {tools: engine.run(tasks, orders=orders, tools_on=tools, keys=keys) for tools in (True, False)}
    return records, runs


def test_manifest_counts_and_media(world):
    out, m = world
    assert m["splits"] == SPLITS
    for split, n in SPLITS.items():
        records = read_records(out / f"{split}.jsonl")
        assert len(records) == n
        assert all(r.has_media(out) for r in records)
        assert {r.subset for r in records} == {split}
    kinds = {r.metadata["world"]["kind"] for r in read_records(out / "test.jsonl")}
    assert kinds == {"image", "answer", "video", "multi", "pointwise"}


def test_deterministic(tmp_path):
    a = generate_world(tmp_path / "a", seed=11, splits={"train": 12})
    b = generate_world(tmp_path / "b", seed=11, splits={"train": 12})
    assert a["by_category"] == b["by_category"]
    assert (tmp_path / "a" / "train.jsonl").read_text() == (tmp_path / "b" / "train.jsonl").read_text()
    for png in sorted((tmp_path / "a" / "media" / "train").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "b" / "media" / "train" / png.name).read_bytes()
    generate_world(tmp_path / "c", seed=12, splits={"train": 12})
    assert (tmp_path / "c" / "train.jsonl").read_text() != (tmp_path / "a" / "train.jsonl").read_text()
    assert not (tmp_path / "c" / "see").exists()  # judging items only: the curriculum is the tiny package's


def _combos(record):
    w = record.metadata["world"]
    if "movers" in w:
        return {(m["colour"], m["shape"]) for m in w["movers"]}
    desc = {(c, s) for c, s, _ in w["description"]["groups"]}
    drawn = {(o["colour"], o["shape"]) for sc in w["scenes"] for o in sc["objects"]}
    return desc | drawn


def test_compositional_split_holds_out_combinations(world):
    out, _ = world
    for split in ("train", "val", "test"):
        for r in read_records(out / f"{split}.jsonl"):
            assert not (_combos(r) & HELD_OUT), (r.id, _combos(r) & HELD_OUT)
    for r in read_records(out / "compositional.jsonl"):
        assert _combos(r) & HELD_OUT, r.id


def test_needs_tool_rule_is_geometric(world):
    """Flags follow the stated rule: shape defects on objects under SHAPE_PX overview pixels, video glitches
    on frames the overview skips."""
    out, _ = world
    scale = WorldConfig().overview_scale()
    seen = defaultdict(int)
    for r in read_records(out / "train.jsonl") + read_records(out / "test.jsonl"):
        w = r.metadata["world"]
        if w["kind"] == "video":
            overview = set(sample_frame_indices(w["clip_frames"], WORLD_VISUAL.overview_frames))
            hidden = not (set(w["glitch"]["frames"]) & overview)
            assert w["needs_tool"] == hidden
            seen[f"video/{hidden}"] += 1
        elif w["kind"] == "image" and w["defects"]:
            info = next(d for d in w["defects"] if d)
            if info["kind"] == "shape":
                bad = Scene.from_dict(w["scenes"][w["defects"].index(info)])
                small = bad.objects[info["object"]].size * scale < SHAPE_PX
                assert w["needs_tool"] == small
                seen["shape"] += 1
    assert seen["shape"] and seen["video/True"]


def test_oracle_needs_tools_exactly_where_flagged(oracle_runs):
    """The guarantee, measured: on needs-tool items the overview-only oracle is near chance while the tool-using
    oracle is near perfect; on the others the overview is enough."""
    records, runs = oracle_runs
    acc = {}
    for tools, trajs in runs.items():
        for flag in (True, False):
            oks = [
                check_verdict(r, t).correct
                for r, t in zip(records, trajs)
                if r.metadata["world"]["needs_tool"] == flag
            ]
            acc[(tools, flag)] = sum(oks) / len(oks)
    print("oracle accuracy (tools, needs_tool):", acc)
    assert acc[(True, True)] >= 0.9, acc
    assert acc[(True, False)] >= 0.9, acc
    assert acc[(False, False)] >= 0.85, acc
    assert acc[(False, True)] <= 0.65, acc
    tool_trajs = runs[True]
    assert all(t.stop_reason == "answer" and t.format_ok for t in tool_trajs)
    used = [len(t.tool_trace) for r, t in zip(records, tool_trajs) if r.metadata["world"]["needs_tool"]]
    assert sum(u > 0 for u in used) / len(used) > 0.9
    assert all(call["ok"] for t in tool_trajs for call in t.tool_trace)
    assert not any(t.tool_trace for t in runs[False])


def test_oracle_wording_varies_and_parses(oracle_runs):
    _, runs = oracle_runs
    firsts = [t.messages[2]["content"][0]["text"] for t in runs[True]]
    thinks = {parse_turn(x).think.split(".")[0] for x in firsts}
    assert len(thinks) >= 5  # not one sentence for every item


def test_oracle_reads_the_latest_view_first(oracle_runs):
    """The oracle's final reasoning starts from what was shown last (the latest picture, the last answer), the
    lookup a small student can learn; its verdicts are the same either way (test above)."""
    records, runs = oracle_runs
    checked = {"image": 0, "answer": 0}
    for trajs in runs.values():
        for r, t in zip(records, trajs):
            think = parse_turn(t.messages[-1]["content"][0]["text"]).think
            refs = [p["ref"] for m in t.messages for p in m["content"] if p.get("type") == "image"]
            if r.modality == "image" and r.task != "pointwise":
                described = re.findall(r"In (obs_\d+|image_\d+)", think)
                assert described and described[0] == refs[-1], (think, refs)
                checked["image"] += 1
            elif r.modality == "answer" and "Neither" not in think and "guess" not in think:
                user = next(m for m in t.messages if m["role"] == "user")
                shown = re.findall(r"\[Answer (\d+)\]", " ".join(p.get("text", "") for p in user["content"]))
                assert f"Answer {shown[-1]} says" in think, think
                checked["answer"] += 1
    assert checked["image"] > 20 and checked["answer"] > 10, checked


@pytest.fixture(scope="module")
def each_runs(world, oracle_runs):
    """The oracle with ``crop_policy="each"`` on the test split, tools on, in the same orders as ``oracle_runs``."""
    out, _ = world
    records, _ = oracle_runs
    engine = RolloutEngine(
        OracleTeacher({r.id: r for r in records}, crop_policy="each"),
        settings=EngineSettings(visual=WORLD_VISUAL, tools=WORLD_TOOLS, verdict_mode="strict"),
    )
    rng = random.Random(0)
    orders = [[0] if r.task == "pointwise" else rng.sample([0, 1], 2) for r in records]
    return engine.run(
        [r.to_task(out) for r in records], orders=orders, tools_on=True, keys=[f"{r.id}|x" for r in records]
    )


def test_oracle_looks_at_each_candidate_in_turn(world, oracle_runs, each_runs):
    """``crop_policy="each"``: on two-image items the oracle crops image_1 then image_2 (the whole image when its shapes
    are readable) and describes every view in the turn right after it, so each description is of the latest
    picture; it stays as accurate as the zoom policy."""
    out, _ = world
    records, runs = oracle_runs
    trajs = each_runs
    pairs = [(r, t) for r, t in zip(records, trajs) if r.modality == "image" and r.task != "pointwise"]
    assert len(pairs) > 30
    boxes = Counter()
    for r, t in pairs:
        assert [c["name"] for c in t.tool_trace] == ["crop", "crop"], t.tool_trace
        assert [c["arguments"]["image"] for c in t.tool_trace] == ["image_1", "image_2"]
        for k, call in enumerate(t.tool_trace):
            # The whole image when the overview's shapes are readable, else a zoom around the objects.
            overview = WORLD_VISUAL.image_budget.fit(Image.open(out / r.candidates[t.order[k]]).convert("RGB"))
            readable = shapes_readable(perceive(overview, min_area=1))
            full = call["arguments"]["bbox_2d"] == [0, 0, 1000, 1000]
            assert full == readable, (call, readable)
            boxes[full] += 1
        shown = []
        for m in t.messages:
            shown += [p["ref"] for p in m["content"] if p.get("type") == "image"]
            if m["role"] == "assistant" and shown[-1].startswith("obs_"):
                think = parse_turn(m["content"][0]["text"]).think
                assert think.startswith(f"In {shown[-1]} (the crop of image_"), (think, shown)
                assert len(re.findall(r"In (obs_\d+|image_\d+)", think)) == 1, think
    assert boxes[False] > 0  # this test world's objects are small (the default sizes): most views need a zoom

    def accuracy(ts):
        return sum(check_verdict(r, t).correct for r, t in zip(records, ts)) / len(records)

    assert accuracy(trajs) >= accuracy(runs[True]) - 0.03
    with pytest.raises(ValueError, match="crop_policy must be one of"):
        OracleTeacher({}, crop_policy="peek")


def test_diagnosis_of_each_step(world, oracle_runs, each_runs):
    """The step-by-step diagnosis scores the oracle's own trajectories as right at every step it can check, and
    sees a judge that misreads the pictures as a perception failure, not a verdict failure."""
    import copy  # noqa: PLC0415

    from mmreward_tiny.curriculum.diagnose import diagnose, parse_seen, summarize  # noqa: PLC0415

    assert parse_seen("a green square and two red circles") == Counter({("green", "square"): 1, ("red", "circle"): 2})
    assert parse_seen("nothing I can make out") == Counter() and parse_seen("a blur") is None
    out, _ = world
    records, _ = oracle_runs
    pairs = [(r, t) for r, t in zip(records, each_runs) if r.task == "pairwise" and r.modality == "image"]
    s = summarize([diagnose(r, t, out, WORLD_TOOLS) for r, t in pairs])
    print("oracle diagnosis:", s)
    assert s["both_views_described"] == 1.0 and s["perception"] == 1.0 and s["match_call"] == 1.0, s
    assert s["comparison"] >= 0.9, s  # a relation problem is not in the "I see" list
    assert s["restated"] == 1.0, s  # every finding restates the prompt's objects, in full
    assert s["checks"] == 1.0, s  # and marks each object of either list by whether the other has it
    # The match call is about alignment; quality problems get a sentence of their own after it.
    texts = [m["content"][0]["text"] for t in each_runs for m in t.messages if m["role"] == "assistant"]
    calls = [c for x in texts for c in re.findall(r"I see: [^.]*\. ((?:But )?[^.]*\.)", x)]
    assert calls and not [c for c in calls if "noisy" in c or "blurred" in c], calls
    assert any("As for quality, " in x for x in texts)
    assert s["decisive_pairs"] > 10 and s["verdict_follows_calls"] == 1.0, s

    # A judge that always claims to see a red cross: its perception and match calls fail, its verdicts still
    # follow its calls.
    blind = []
    for r, t in pairs:
        t = copy.deepcopy(t)
        for m in t.messages:
            if m["role"] == "assistant":
                m["content"][0]["text"] = re.sub(r"I see .*?\. ", "I see a red cross. ", m["content"][0]["text"])
        blind.append(diagnose(r, t, out, WORLD_TOOLS))
    b = summarize(blind)
    assert b["perception"] < 0.2 and b["verdict_follows_calls"] == 1.0 and b["restated"] == 1.0, b

    # One that misquotes the prompt: only the restatement step fails.
    misquote = []
    for r, t in pairs:
        t = copy.deepcopy(t)
        for m in t.messages:
            if m["role"] == "assistant":
                text = m["content"][0]["text"]
                m["content"][0]["text"] = re.sub(r"asks for [^.]*\.", "asks for two red crosses.", text)
        misquote.append(diagnose(r, t, out, WORLD_TOOLS))
    q = summarize(misquote)
    assert q["restated"] < 0.2 and q["perception"] == 1.0 and q["match_call"] == 1.0, q

    # One whose marks all say "yes": only the check step fails, on the views that do not match.
    yes = []
    for r, t in pairs:
        t = copy.deepcopy(t)
        for m in t.messages:
            if m["role"] == "assistant":
                m["content"][0]["text"] = re.sub(r" no([;.])", r" yes\1", m["content"][0]["text"])
        yes.append(diagnose(r, t, out, WORLD_TOOLS))
    y = summarize(yes)
    assert 0.2 < y["checks"] < 0.8 and y["perception"] == 1.0 and y["match_call"] == 1.0, y


def test_check_lists_marks_each_object_both_ways():
    """A finding's checks: the prompt's objects looked up in what is seen, then what is seen looked up in the
    prompt's objects; a mark says "yes" only for the same colour, shape and count."""
    from data_pipelines.synthetic.oracle import check_lists  # noqa: PLC0415
    from mmreward_tiny.curriculum.diagnose import marks_right  # noqa: PLC0415

    want = Counter({("green", "square"): 1, ("red", "circle"): 2})
    seen = Counter({("red", "circle"): 3, ("green", "square"): 1, ("blue", "cross"): 1})
    assert check_lists(want, seen) == (
        "Check the prompt objects: a green square yes; two red circles no. "
        "Check the objects I see: three red circles no; a green square yes; a blue cross no."
    )
    assert check_lists(want, Counter(want)).count(" no") == 0
    assert check_lists(want, Counter()) == "Check the prompt objects: a green square no; two red circles no."
    assert marks_right("a green square yes; two red circles no", seen) is True
    assert marks_right("a green square no", seen) is False and marks_right("a blur yes", seen) is None


def test_one_crop_rows_are_the_judges_views(world, oracle_runs, each_runs, tmp_path):
    """A one-crop row shows the pixels the ``each`` oracle got back from its crop of that candidate, and answers
    with the sentence the oracle wrote about it (what it sees, and the match call or the same problems)."""
    from mmreward_tiny.curriculum.crops import generate_crops, record_rows  # noqa: PLC0415
    from mmreward_tiny.curriculum.diagnose import FINDING, _view  # noqa: PLC0415

    out, _ = world
    records, _ = oracle_runs
    (tmp_path / "media").mkdir()
    checked = 0
    for r, t in zip(records, each_runs):
        if r.modality != "image" or r.task != "pairwise":
            continue
        rows = record_rows(r, out, tmp_path, "test")
        said = {}
        for m in t.messages:
            if m["role"] == "assistant":
                think = parse_turn(m["content"][0]["text"]).think + " "
                for _obs, image, seen, call in FINDING.findall(think):
                    said[int(image.split("_")[1]) - 1] = (seen, call, think)
        for k, cand in enumerate(t.order):
            row = rows[cand]
            pixels = _view(r, t, f"image_{k + 1}", out, WORLD_TOOLS)  # what the crop tool returned to the oracle
            row_pixels = Image.open(tmp_path / row["images"][0]).convert("RGB")
            assert pixels.size == row_pixels.size and pixels.tobytes() == row_pixels.tobytes(), (r.id, k)
            ((_, _, seen, call),) = FINDING.findall(row["answer"] + " ")
            assert seen == said[k][0] and (call == "But ") == (said[k][1] == "But "), (row["answer"], said[k])
            if call == "But ":  # the same problems, in the same words
                assert row["answer"].split(f"I see {seen}. ")[1] in said[k][2], (row["answer"], said[k])
            assert row["match"] == [call != "But "]
            checked += 1
    assert checked > 40

    m = generate_crops(tmp_path / "fresh", 12, seed=1, val_records=out / "test.jsonl", n_val=5)
    assert m["splits"]["val"] == 5 and 12 <= m["splits"]["train"] <= 24  # a pair gives 2 rows, pointwise 1
    assert 0.1 < m["match_share"]["train"] < 0.9
    generate_crops(tmp_path / "again", 12, seed=1)
    assert (tmp_path / "fresh" / "train.jsonl").read_text() == (tmp_path / "again" / "train.jsonl").read_text()
    assert not [p for p in (tmp_path / "fresh").iterdir() if p.is_dir() and p.name != "media"]  # no scratch left


def test_oracle_perceives_pixels_not_labels():
    """Perception reads the image: a big shape is read right, the same scene shrunk to overview size is not."""
    rng = random.Random(0)
    desc = Description([("red", "cross", 1), ("blue", "triangle", 1)])
    scene = layout(desc, 448, (0.2, 0.25), rng)
    blobs = perceive(render(scene))
    assert sorted((b.colour, b.shape) for b in blobs) == [("blue", "triangle"), ("red", "cross")]
    tiny = layout(desc, 448, (0.012, 0.012), rng)
    small = perceive(WORLD_VISUAL.image_budget.fit(render(tiny)), min_area=1)
    assert sorted((b.colour, b.shape) for b in small) != [("blue", "triangle"), ("red", "cross")]


def test_video_glitch_is_in_the_file(world):
    out, _ = world
    r = next(r for r in read_records(out / "test.jsonl") if r.metadata["world"]["kind"] == "video")
    w = r.metadata["world"]
    bad = 1 - r.preferred
    clips = [open_video(out / c) for c in r.candidates]
    assert clips[0].num_frames == w["clip_frames"]
    f = w["glitch"]["frames"][0]
    diff = [
        abs(int(a) - int(b))
        for a, b in zip(clips[bad].frames([f])[0].tobytes()[::97], clips[1 - bad].frames([f])[0].tobytes()[::97])
    ]
    assert max(diff) > 60  # the glitch frame differs from the faithful clip's frame


def test_pointwise_scores_follow_defects(world):
    out, _ = world
    for r in read_records(out / "train.jsonl"):
        if r.task == "pointwise":
            assert 1 <= r.score <= 10
            if r.category == "pointwise/clean":
                assert r.score == pointwise_score(0, 0) == 10


def test_learning_to_see_data(world):
    out, m = world
    rows = read_see(out / "see" / "train.jsonl")
    assert len(rows) == 60 and m["see"]["val"]["n"] == 20
    assert {r["level"] for r in rows} == {0, 1, 2, 3}
    assert {r["view"] for r in rows} >= {"whole", "pair", "crop", "overview"}
    for r in rows:
        assert r["question"] and r["answer"]
        assert all((out / "see" / p).is_file() for p in r["images"])
    for r in rows:  # two labelled images that differ in one attribute; the question names one of them
        if r["view"] == "pair":
            assert r["labels"] == ["Image 1:", "Image 2:"] and len(r["images"]) == 2
            assert re.match(r"^(What is in image [12]\?|Which image shows an? \w+ \w+\?)$", r["question"])
    pair = next(r for r in rows if r["view"] == "pair")
    from train.render import chat_row_content  # noqa: PLC0415

    content = chat_row_content(pair, ["im1", "im2"])  # each image after its label, as the judging prompt shows them
    assert [c.get("text", c.get("image")) for c in content] == [
        "Image 1:\n",
        "im1",
        "\n",
        "Image 2:\n",
        "im2",
        "\n",
        pair["question"],
    ]
    loc = [r for r in rows if r["view"] == "overview"]
    if loc:  # the locate answer is a box in the crop tool's 0-1000 coordinates
        box = json.loads(loc[0]["answer"].split("crop box ")[1].split(";")[0])
        assert len(box) == 4 and all(0 <= v <= 1000 for v in box)


def test_lookup_warmup_rows(tmp_path):
    """The text-only lookup rows of stage 0's warm-up: each answer is what the context says under the asked label
    (or the label of the asked item), items under one row are distinct, generation is seeded, and the rows render
    as one-turn chats with no images, trained on the answer only."""
    from mmreward_tiny.curriculum.lookup import generate_lookup  # noqa: PLC0415

    m = generate_lookup(tmp_path / "lk", 300, seed=3, n_val=20)
    assert m["splits"] == {"train": 300, "val": 20}
    rows = read_see(tmp_path / "lk" / "train.jsonl")
    again = generate_lookup(tmp_path / "lk2", 300, seed=3, n_val=20)
    assert again == m
    assert (tmp_path / "lk2" / "train.jsonl").read_text() == (tmp_path / "lk" / "train.jsonl").read_text()
    kinds = defaultdict(int)
    for r in rows:
        assert r["images"] == [] and r["view"] == "lookup"
        context, question = r["question"].rsplit("\n\n", 1)
        items = re.findall(r"^(?:Image (\d):|\[Answer (\d)\]|Video (\d):)\n(.+)\.$", context, flags=re.M)
        labels = [int(a or b or c) for a, b, c, _ in items]
        values = [v for *_, v in items]
        assert labels == list(range(1, len(items) + 1)) and 2 <= len(items) <= 3
        assert len(set(values)) == len(values)
        if m_which := re.fullmatch(r"Which (image|answer|video) shows (.+)\?", question):
            k = values.index(m_which.group(2)) + 1
            assert r["answer"].lower() == f"{m_which.group(1)} {k}."
            kinds["which"] += 1
        else:
            k = int(re.fullmatch(r"What is in (?:image|Answer|video) (\d)\?", question).group(1))
            assert r["answer"] == values[k - 1] + "."
            kinds["what"] += 1
    assert kinds["which"] > 100 and kinds["what"] > 100


def test_comparison_warmup_rows(tmp_path):
    """The text-only comparison rows: for each crop the answer repeats what it shows and then says, in the oracle's
    own words, whether that is what the prompt asks for. Checked against the diagnosis's reading of the same sentence
    (``FINDING``, ``parse_seen``) and the prompt's counts read back from its words: a match exactly when the two
    agree, and every missing, miscounted and unexpected object named. Generation is seeded; one- and two-crop rows,
    matches and each kind of mismatch are all common."""
    from data_pipelines.synthetic.oracle import MATCH_PHRASES  # noqa: PLC0415
    from mmreward_tiny.curriculum.compare import QUESTION, generate_compare  # noqa: PLC0415
    from mmreward_tiny.curriculum.diagnose import FINDING, marks_right, parse_seen  # noqa: PLC0415

    m = generate_compare(tmp_path / "cmp", 600, seed=1, n_val=20)
    assert m["splits"] == {"train": 600, "val": 20} and 0.3 < m["match_share"]["train"] < 0.6
    assert generate_compare(tmp_path / "cmp2", 600, seed=1, n_val=20) == m
    assert (tmp_path / "cmp2" / "train.jsonl").read_text() == (tmp_path / "cmp" / "train.jsonl").read_text()
    kinds = Counter()
    number = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
    singular = {p: s for s, p in PLURAL.items()}
    for r in read_see(tmp_path / "cmp" / "train.jsonl"):
        assert r["images"] == [] and r["view"] == "compare"
        prompt, *shows, question = r["question"].split("\n")
        assert question == QUESTION and len(shows) == len(r["match"]) in (1, 2)
        kinds[f"{len(shows)} crops"] += 1
        body = re.sub(
            r"^Prompt: (An image of |A picture showing |A simple drawing of |A plain background with )?", "", prompt
        ).rstrip(".")
        want = Counter()
        for part in re.split(r", | and ", body):
            n, colour, shape = part.lower().split()
            want[(colour, singular.get(shape, shape))] += number[n]
        findings = FINDING.findall(r["answer"] + " ")
        sentences = re.split(r" (?=In obs_\d)", r["answer"])
        assert len(findings) == len(sentences) == len(shows)
        for k, (line, (obs, image, seen_text, _), sentence, match) in enumerate(
            zip(shows, findings, sentences, r["match"]), 1
        ):
            assert (obs, image) == (f"obs_{k}", f"image_{k}")
            assert line == f"obs_{k} (the crop of image_{k}) shows {seen_text}."
            # the prompt's objects restated in the prompt's order, the checks of either list, then the call
            asked, on_prompt, on_seen, verdict = re.fullmatch(
                r"The prompt asks for ([^.]*)\. Check the prompt objects: ([^.]*)\. "
                r"(?:Check the objects I see: ([^.]*)\. )?(.*)",
                sentence.split(f"I see {seen_text}. ", 1)[1],
            ).groups()
            assert list(parse_seen(asked).items()) == list(want.items())
            seen = parse_seen(seen_text)
            assert (seen == want) == match
            assert marks_right(on_prompt, seen) and (marks_right(on_seen, want) if on_seen else not seen)
            assert (" no" not in f" {on_prompt}; {on_seen or ''}".replace(";", " ")) == match
            if match:
                assert verdict in MATCH_PHRASES
                kinds["match"] += 1
                continue
            assert verdict.startswith("But ")
            issues = verdict[4:-1].split("; ")
            for (colour, shape), n in want.items():
                if seen[(colour, shape)] == 0:
                    assert f"there is no {colour} {shape}" in issues
                    kinds["missing"] += 1
                elif seen[(colour, shape)] != n:
                    k = seen[(colour, shape)]
                    there = (
                        f"there is one {colour} {shape}"
                        if k == 1
                        else f"there are {NUMBER_WORDS[k]} {colour} {PLURAL[shape]}"
                    )
                    assert f"{there}, not {NUMBER_WORDS[n]}" in issues
                    kinds["count"] += 1
            for colour, shape in seen:
                if (colour, shape) not in want:
                    assert f"there is an unexpected {colour} {shape}" in issues
                    kinds["unexpected"] += 1
    assert min(kinds.values()) > 40 and len(kinds) == 6, kinds
