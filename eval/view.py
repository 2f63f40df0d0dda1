"""``mmreward view``: a static, self-contained HTML site of what a judge did, item by item.

Inputs (a file or a folder; a folder is searched two levels down, and each part found becomes a *stage*):

* an ``eval run`` folder: ``trajectories*.jsonl`` (labels and results included);
* a distillation folder: ``kept.jsonl`` and ``rejected.jsonl`` (with the reason);
* a rejection-sampling folder: ``samples.jsonl`` (every sample; right or wrong with ``--records``);
* a GRPO output folder: TRL's ``completions/*.parquet`` (``log_completions: true``), whose ``trajectory`` column our
  reward functions fill;
* a trajectories JSONL file (rows that are trajectories, or that hold one under ``trajectory``).

Every trajectory is replayed with :func:`mmreward.trajectory.materialize` (tools are deterministic), so the site
shows the images the judge saw: inputs, overview frames with their indices and timestamps, and each tool's view,
with the crop box drawn on the image it cut. Thumbnails are named by their content and written once. The index holds
a summary and a filterable list (filters live in the URL: ``index.html#result=wrong&category=color``); each item
(all its presented orders side by side) has its own page under ``items/``.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_pipelines.batch import needs_tool
from data_pipelines.labels import check_verdict, label_text
from data_pipelines.records import PreferenceRecord, read_records
from mmreward.errors import InputError
from mmreward.judge import candidate_verdict
from mmreward.protocol import parse_turn
from mmreward.trajectory import Trajectory, materialize

THUMB_SIDE = 320


@dataclass
class ViewItem:
    """One trajectory as the viewer shows it."""

    traj: Trajectory
    stage: str
    group: str  # trajectories of one item (and vote or sample) share a group: its orders side by side
    record_id: str
    category: str = ""
    label: str | None = None
    correct: bool | None = None
    needs_tool: str = "unknown"
    note: str = ""  # why distillation rejected it, the GRPO reward, ...
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def disagreement_key(self) -> Any:
        """The verdict in candidate terms (so two presented orders can be compared)."""
        v = candidate_verdict(self.traj)
        return "fail" if v is None else [v.winner, v.score, sorted(v.dimensions.items())]


# ----------------------------------------------------------------------------------------------------------------------
# Reading the inputs


def _jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if lineno == len(lines):
                continue  # a torn last line of a run that was stopped
            raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    return rows


def _traj(d: dict[str, Any], where: str) -> Trajectory:
    known = {k: v for k, v in d.items() if k in Trajectory.__dataclass_fields__}
    try:
        return Trajectory.from_dict(known)
    except TypeError as exc:
        raise InputError(f"{where}: not a trajectory ({exc})") from None


def _base_id(traj_id: str) -> str:
    return traj_id.split("|")[0].split("#")[0]


def _with_records(item: ViewItem, records: dict[str, PreferenceRecord]) -> ViewItem:
    rec = records.get(item.record_id)
    if rec is None:
        return item
    item.category = item.category or rec.category
    item.label = item.label or label_text(rec)
    item.needs_tool = needs_tool(rec) if item.needs_tool == "unknown" else item.needs_tool
    if item.correct is None and item.traj.task.get("kind") == rec.task:
        item.correct = check_verdict(rec, item.traj).correct
    return item


def _eval_items(folder: Path, stage: str) -> list[ViewItem]:
    items = []
    for f in sorted(folder.glob("trajectories*.jsonl")):
        for i, row in enumerate(_jsonl(f), 1):
            t = _traj(row["trajectory"], f"{f}:{i}")
            cand = row.get("candidate")
            items.append(
                ViewItem(
                    t,
                    stage,
                    group=f"{row['record_id']}|v{row.get('vote', 0)}",
                    record_id=row["record_id"],
                    category=row.get("category") or "",
                    label=row.get("label"),
                    correct=row.get("correct"),
                    needs_tool=str(row.get("needs_tool", "unknown")),
                    note=f"scored candidate {cand + 1} alone" if cand is not None else "",
                )
            )
    return items


def _distill_items(folder: Path, stage: str) -> list[ViewItem]:
    items = []
    for name, ok in (("kept.jsonl", True), ("rejected.jsonl", False)):
        f = folder / name
        if not f.is_file():
            continue
        for i, row in enumerate(_jsonl(f), 1):
            t = _traj(row, f"{f}:{i}")
            reason = row.get("reason", "")
            items.append(
                ViewItem(
                    t,
                    f"{stage}:{name.split('.')[0]}",
                    group=_base_id(t.id),
                    record_id=_base_id(t.id),
                    category=row.get("category") or "",
                    # Kept means verified against the label; a rejection for format or a cap may still be right.
                    correct=True if ok else (False if reason in ("wrong verdict", "wrong dimension") else None),
                    note="kept: verified against the label" if ok else f"rejected: {reason}",
                )
            )
    return items


def _rejection_items(folder: Path, stage: str) -> list[ViewItem]:
    items = []
    f = folder / "samples.jsonl"
    for i, row in enumerate(_jsonl(f), 1):
        if row.get("status") != "done":
            continue
        t = _traj(row["trajectory"], f"{f}:{i}")
        items.append(
            ViewItem(t, stage, group=f"{row['record_id']}|s{row.get('sample', 0)}", record_id=row["record_id"])
        )
    return items


def _grpo_items(folder: Path, stage: str) -> list[ViewItem]:
    import pandas as pd  # noqa: PLC0415

    items = []
    files = sorted((folder / "completions").glob("completions_*.parquet"))
    for f in files:
        df = pd.read_parquet(f)
        if "trajectory" not in df.columns:
            raise InputError(
                f"{f}: no 'trajectory' column; it was written by a GRPO run without mmreward's reward functions "
                "(train with `mmreward train grpo` and log_completions: true)"
            )
        rewards = [c for c in df.columns if c not in ("step", "prompt", "completion", "trajectory", "advantage")]
        for i, row in enumerate(df.to_dict("records")):
            d = json.loads(row["trajectory"])
            t = _traj(d["trajectory"], f"{f}:{i}")
            note = ", ".join(
                f"{c} {row[c]:.2f}" for c in rewards if isinstance(row[c], (int, float)) and c in d.get("rewards", [])
            )
            items.append(
                ViewItem(
                    t,
                    stage,
                    group=f"{d['record_id']}|step{row.get('step', 0)}",
                    record_id=d["record_id"],
                    category=d.get("category", ""),
                    label=d.get("label"),
                    correct=d.get("correct"),
                    needs_tool=str(d.get("needs_tool", "unknown")),
                    note=f"step {row.get('step')}; advantage {row.get('advantage', 0):.2f}; {note}".rstrip("; "),
                )
            )
    return items


def _file_items(path: Path, stage: str) -> list[ViewItem]:
    items = []
    for i, row in enumerate(_jsonl(path), 1):
        d = row.get("trajectory", row)
        t = _traj(d, f"{path}:{i}")
        rid = row.get("record_id") or _base_id(t.id)
        items.append(
            ViewItem(
                t,
                stage,
                group=rid,
                record_id=rid,
                category=row.get("category") or "",
                label=row.get("label"),
                correct=row.get("correct"),
                note=f"rejected: {row['reason']}" if row.get("reason") else "",
            )
        )
    return items


def _kind(folder: Path) -> str | None:
    if any(folder.glob("trajectories*.jsonl")):
        return "eval"
    if (folder / "kept.jsonl").is_file() or (folder / "rejected.jsonl").is_file():
        return "distill"
    if (folder / "samples.jsonl").is_file():
        return "rejection"
    if any((folder / "completions").glob("completions_*.parquet")):
        return "grpo"
    return None


READERS = {"eval": _eval_items, "distill": _distill_items, "rejection": _rejection_items, "grpo": _grpo_items}


def _folders(root: Path, depth: int) -> list[Path]:
    """Sub-folders of ``root`` down to ``depth`` levels, parents first (a run folder holds thousands of media files,
    which a full recursive glob would visit)."""
    found, level = [], [root]
    for _ in range(depth):
        level = sorted(p for d in level for p in d.iterdir() if p.is_dir())
        found += level
    return sorted(found)


def load_items(path: str | os.PathLike, records: list[PreferenceRecord] | None = None) -> list[ViewItem]:
    """Every trajectory under ``path`` (see the module docstring), labelled from ``records`` where given."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        items = _file_items(path, path.stem)
    else:
        parts = []
        kind = _kind(path)
        if kind:
            parts.append((path, kind, path.name))
        else:
            for sub in _folders(path, depth=3):
                k = _kind(sub)
                if k and not any(sub.is_relative_to(done) for done, _, _ in parts):
                    parts.append((sub, k, str(sub.relative_to(path))))
        if not parts:
            raise InputError(
                f"{path}: nothing to show; give an `eval run` folder (trajectories.jsonl), a distillation folder "
                "(kept.jsonl), a rejection-sampling folder (samples.jsonl), a GRPO output folder (completions/), "
                "a folder holding any of these, or a trajectories .jsonl file"
            )
        items = [item for folder, kind, stage in parts for item in READERS[kind](folder, stage)]
    if records:
        table = {r.id: r for r in records}
        items = [_with_records(i, table) for i in items]
    return items


def read_record_files(paths: list[str]) -> list[PreferenceRecord]:
    out = []
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"--records {p}: no such file")
        out.extend(read_records(p))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Summary


def summarize(items: list[ViewItem]) -> dict[str, Any]:
    def acc(xs: list[ViewItem]) -> dict[str, Any]:
        known = [i.correct for i in xs if i.correct is not None]
        return {"n": len(xs), "scored": len(known), "accuracy": sum(known) / len(known) if known else None}

    by_cat: dict[str, list[ViewItem]] = defaultdict(list)
    by_stage: dict[str, list[ViewItem]] = defaultdict(list)
    for i in items:
        by_cat[i.category or "-"].append(i)
        by_stage[i.stage].append(i)
    return {
        "trajectories": len(items),
        "items": len({(i.stage, i.group) for i in items}),
        "overall": acc(items),
        "by_category": {k: acc(v) for k, v in sorted(by_cat.items())},
        "by_stage": {k: acc(v) for k, v in sorted(by_stage.items())},
        "tool_call_rate": sum(bool(i.traj.tool_trace) for i in items) / len(items) if items else None,
        "parse_failure_rate": sum(i.traj.verdict is None for i in items) / len(items) if items else None,
    }


# ----------------------------------------------------------------------------------------------------------------------
# The site


class Thumbs:
    """Downscaled copies of images, named by a hash of their pixels, written once into ``out/thumbs``."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "thumbs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.made = 0
        self.reused = 0

    def __call__(self, image) -> tuple[str, int, int]:
        digest = hashlib.sha1(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()[:20]
        name = f"{digest}.jpg"
        target = self.dir / name
        if target.is_file():
            self.reused += 1
        else:
            thumb = image.convert("RGB")
            thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            thumb.save(tmp, format="JPEG", quality=88)
            os.replace(tmp, target)
            self.made += 1
        return f"thumbs/{name}", image.width, image.height


def _resolve_media(traj: Trajectory, media_root: Path | None) -> Trajectory:
    """The trajectory with its media paths made to exist (tried as recorded, then under ``media_root``)."""
    if media_root is None:
        return traj
    task = dict(traj.task)
    for key in ("candidates", "media"):
        fixed = []
        for p in task.get(key) or []:
            if isinstance(p, str) and not Path(p).exists() and (media_root / p).exists():
                p = str(media_root / p)
            fixed.append(p)
        task[key] = fixed
    return Trajectory.from_dict({**traj.to_dict(), "task": task})


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}
.right{color:#06790f}.wrong{color:#b00020}.unknown{color:#777}
#filters label{margin-right:1em}#pager button{margin:0 .2em}
.orders{display:flex;gap:1.5em;align-items:flex-start}.order{flex:1;min-width:0;border:1px solid #ddd;padding:.5em}
.msg{margin:.4em 0;padding:.4em;border-left:4px solid #ccc}.msg.assistant{border-color:#3b6bd6;background:#f4f7ff}
.msg.tool{border-color:#d69a3b;background:#fff9f0}.msg.user,.msg.system{background:#fafafa}
pre{white-space:pre-wrap;word-break:break-word;margin:.2em 0;font:13px/1.35 ui-monospace,monospace}
figure{display:inline-block;margin:.2em .4em .2em 0;vertical-align:top}figcaption{font-size:11px;color:#555}
img.t{max-width:240px;max-height:240px;display:block}
.boxed{position:relative;display:inline-block}.box{position:absolute;border:2px solid #ff2a6d;box-sizing:border-box}
.call{display:flex;gap:1em;align-items:flex-start;flex-wrap:wrap;margin:.3em 0}
.tag{display:inline-block;padding:0 .4em;border-radius:3px;background:#eee;margin-right:.3em;font-size:12px}
"""

INDEX_JS = """
const DATA = JSON.parse(document.getElementById('data').textContent);
const KEYS = ['stage','category','result','needs_tool','parse','stop','disagree'];
const PAGE = 100;
function state(){const s={};new URLSearchParams(location.hash.slice(1)).forEach((v,k)=>s[k]=v);return s;}
function match(g,s){
  if(s.stage&&g.stage!==s.stage)return false;
  if(s.category&&g.category!==s.category)return false;
  if(s.result&&g.result!==s.result)return false;
  if(s.needs_tool&&g.needs_tool!==s.needs_tool)return false;
  if(s.parse==='failure'&&!g.parse_failure)return false;
  if(s.parse==='parsed'&&g.parse_failure)return false;
  if(s.stop&&!g.stops.includes(s.stop))return false;
  if(s.disagree==='yes'&&!g.disagree)return false;
  if(s.disagree==='no'&&(g.disagree||g.n<2))return false;
  return true;
}
function render(){
  const s=state();
  for(const k of KEYS){const el=document.getElementById('f-'+k);if(el)el.value=s[k]||'';}
  const rows=DATA.groups.filter(g=>match(g,s));
  const pages=Math.max(1,Math.ceil(rows.length/PAGE));const page=Math.min(pages,Math.max(1,+(s.page||1)));
  const body=document.getElementById('rows');body.innerHTML='';
  for(const g of rows.slice((page-1)*PAGE,page*PAGE)){
    const tr=document.createElement('tr');tr.className='item';tr.dataset.result=g.result;tr.dataset.category=g.category;
    const cells=[`<a href="${g.href}">${g.title}</a>`,g.stage,g.category,g.label||'-',
      g.verdicts.map(v=>`<span class="${v.cls}">${v.text}</span>`).join('<br>'),
      `<span class="${g.result}">${g.result}</span>`,g.flags.map(f=>`<span class="tag">${f}</span>`).join('')];
    tr.innerHTML=cells.map(c=>`<td>${c}</td>`).join('');body.appendChild(tr);
  }
  document.getElementById('count').textContent=`${rows.length} of ${DATA.groups.length} items`;
  const pager=document.getElementById('pager');pager.innerHTML='';
  if(pages>1)for(let p=1;p<=pages;p++){const b=document.createElement('button');b.textContent=p;b.disabled=p===page;
    b.onclick=()=>{const t=state();t.page=p;go(t);};pager.appendChild(b);}
}
function go(s){const q=new URLSearchParams();for(const[k,v]of Object.entries(s))if(v)q.set(k,v);location.hash=q.toString();}
for(const k of KEYS){const el=document.getElementById('f-'+k);if(el)el.onchange=()=>{const s=state();s[k]=el.value;delete s.page;go(s);};}
window.addEventListener('hashchange',render);render();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _verdict_text(item: ViewItem) -> tuple[str, str]:
    t = item.traj
    cls = "unknown" if item.correct is None else ("right" if item.correct else "wrong")
    if t.verdict is None:
        return f"no verdict ({t.parse_failure or t.stop_reason})", cls
    v = candidate_verdict(t)
    if v.kind == "pointwise":
        text = f"score {v.score:g}" if v.score is not None else "no score"
    else:
        text = "tie" if v.winner is None else f"candidate {v.winner + 1} better"
    if v.dimensions:
        text += "; " + ", ".join(
            f"{d}: " + (f"{w:g}" if v.kind == "pointwise" else "tie" if w is None else f"candidate {w + 1}")
            for d, w in sorted(v.dimensions.items())
        )
    return text, cls


def _image_html(name: str, images: dict[str, tuple[str, int, int]], caption: str = "", boxes=()) -> str:
    if name not in images:
        return f'<figure><div class="missing">[{_e(name)}: not available]</div><figcaption>{_e(caption or name)}</figcaption></figure>'
    src, _, _ = images[name]
    overlay = "".join(
        f'<div class="box" data-image="{_e(name)}" style="left:{b[0] / 10:.2f}%;top:{b[1] / 10:.2f}%;'
        f'width:{(b[2] - b[0]) / 10:.2f}%;height:{(b[3] - b[1]) / 10:.2f}%"></div>'
        for b in boxes
    )
    return (
        f'<figure data-ref="{_e(name)}"><div class="boxed"><img class="t" src="../{src}" alt="{_e(name)}">{overlay}'
        f"</div><figcaption>{_e(caption or name)}</figcaption></figure>"
    )


def _content_html(content: list[dict[str, Any]], images: dict[str, tuple[str, int, int]]) -> str:
    out = []
    for part in content:
        if part.get("type") == "image":
            out.append(_image_html(part.get("ref", "?"), images))
        elif part.get("type") == "text" and part.get("text"):
            out.append(f"<pre>{_e(part['text'])}</pre>")
    return "".join(out)


def _turn_html(text: str, call: dict[str, Any] | None, images: dict[str, tuple[str, int, int]]) -> str:
    turn = parse_turn(text)
    parts = []
    if turn.think is not None:
        parts.append(f'<div class="think"><b>reasoning</b><pre>{_e(turn.think)}</pre></div>')
    if call is not None:
        args = call.get("arguments") or {}
        status = "ok" if call.get("ok") else f"error: {call.get('error')}"
        parts.append(
            f'<div class="toolcall"><b>tool call</b> <code>{_e(call["name"])}({_e(json.dumps(args))})</code> {_e(status)}'
        )
        views = "".join(_image_html(o, images, o) for o in call.get("observations") or [])
        if call["name"] == "crop" and isinstance(args.get("image"), str) and isinstance(args.get("bbox_2d"), list):
            src = _image_html(args["image"], images, f"{args['image']}: the region cut", [args["bbox_2d"]])
            parts.append(f'<div class="call">{src}<div>&rarr;</div>{views}</div>')
        elif views:
            parts.append(f'<div class="call">{views}</div>')
        parts.append("</div>")
    if turn.answer is not None:
        parts.append(f'<div class="answer"><b>answer</b><pre>{_e(turn.answer)}</pre></div>')
    if turn.think is None and turn.answer is None and call is None:
        parts.append(f"<pre>{_e(text)}</pre>")
    if turn.error:
        parts.append(f'<div class="wrong">format: {_e(turn.error)}</div>')
    return "".join(parts)


def _order_html(item: ViewItem, images: dict[str, tuple[str, int, int]], problem: str | None) -> str:
    t = item.traj
    verdict, cls = _verdict_text(item)
    head = (
        f"<h3>shown in order {' '.join(str(o + 1) for o in t.order)}</h3>"
        f'<p>verdict: <b class="{cls}">{_e(verdict)}</b> &middot; label: {_e(item.label or "-")} &middot; '
        f"stop: {_e(t.stop_reason)} &middot; {t.num_turns} turn(s), {len(t.tool_trace)} tool call(s)"
        + (f" &middot; {_e(item.note)}" if item.note else "")
        + "</p>"
    )
    if problem:
        head += f'<p class="wrong">media could not be rebuilt: {_e(problem)}</p>'
    calls = iter(t.tool_trace)
    body = []
    for m in t.messages:
        role = m["role"]
        if role == "assistant":
            text = "".join(p.get("text", "") for p in m["content"] if p.get("type") == "text")
            call = next(calls, None) if "<tool_call>" in text else None
            inner = _turn_html(text, call, images)
        elif role == "tool":
            refs = [p.get("ref") for p in m["content"] if p.get("type") == "image"]
            texts = "".join(f"<pre>{_e(p['text'])}</pre>" for p in m["content"] if p.get("type") == "text")
            inner = f"<i>tool returned {len(refs)} image(s), shown with the call above</i>{texts}"
        elif role == "system":
            inner = f"<details><summary>system prompt</summary>{_content_html(m['content'], images)}</details>"
        else:
            inner = _content_html(m["content"], images)
        body.append(f'<div class="msg {role}"><b>{role}</b>{inner}</div>')
    return f'<div class="order" data-correct="{cls}">{head}{"".join(body)}</div>'


def _page(title: str, body: str, script: str = "") -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}{script}</body></html>"
    )


def build_site(
    items: list[ViewItem], out: str | os.PathLike, media_root: str | None = None, progress: bool = False
) -> dict[str, Any]:
    """Write ``out/index.html``, ``out/items/*.html`` and ``out/thumbs/``; return the summary and counts."""
    out = Path(out)
    (out / "items").mkdir(parents=True, exist_ok=True)
    thumbs = Thumbs(out)
    root = Path(media_root) if media_root else None
    groups: dict[tuple[str, str], list[ViewItem]] = {}
    for i in items:
        groups.setdefault((i.stage, i.group), []).append(i)
    iterator = list(groups.items())
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        iterator = tqdm(iterator, desc="view", unit="item")
    index_rows = []
    unbuilt = 0
    for n, ((stage, group), members) in enumerate(iterator):
        members.sort(key=lambda i: (i.traj.order, i.traj.id))
        columns = []
        for item in members:
            images: dict[str, tuple[str, int, int]] = {}
            problem = None
            try:
                ctx = materialize(_resolve_media(item.traj, root))
                images = {name: thumbs(img) for name, img in ctx.images.items()}
            except (OSError, ValueError, KeyError) as exc:
                problem = str(exc)
                unbuilt += 1
            columns.append(_order_html(item, images, problem))
        first = members[0]
        href = f"items/{n:05d}.html"
        title = f"{first.record_id}" + (f" ({group.split('|', 1)[1]})" if "|" in group else "")
        prompt = first.traj.task.get("prompt", "")
        nav = (
            '<p><a href="../index.html">&larr; all items</a>'
            + (f' &middot; <a href="{n - 1:05d}.html">previous</a>' if n else "")
            + (f' &middot; <a href="{n + 1:05d}.html">next</a>' if n + 1 < len(groups) else "")
            + "</p>"
        )
        body = (
            f"{nav}<h2>{_e(title)}</h2><p>stage: {_e(stage)} &middot; category: {_e(first.category or '-')} &middot; "
            f"needs tool: {_e(first.needs_tool)} &middot; label: {_e(first.label or '-')}</p>"
            f"<p><b>prompt</b></p><pre>{_e(prompt)}</pre>"
            f'<div class="orders">{"".join(columns)}</div>'
        )
        (out / href).write_text(_page(title, body), encoding="utf-8")
        known = [i.correct for i in members if i.correct is not None]
        result = "unknown" if not known else ("right" if all(known) else "wrong")
        verdicts = [dict(zip(("text", "cls"), _verdict_text(i))) for i in members]
        flags = []
        if any(i.traj.tool_trace for i in members):
            flags.append("tools")
        parse_failure = any(i.traj.verdict is None for i in members)
        if parse_failure:
            flags.append("parse failure")
        disagree = len(members) > 1 and len({json.dumps(i.disagreement_key, default=str) for i in members}) > 1
        if disagree:
            flags.append("orders disagree")
        index_rows.append(
            {
                "href": href,
                "title": title,
                "stage": stage,
                "category": first.category or "-",
                "label": first.label,
                "needs_tool": first.needs_tool,
                "result": result,
                "verdicts": verdicts,
                "parse_failure": parse_failure,
                "stops": sorted({i.traj.stop_reason for i in members}),
                "disagree": disagree,
                "n": len(members),
                "flags": flags,
            }
        )
    summary = summarize(items)
    (out / "index.html").write_text(_index_html(summary, index_rows), encoding="utf-8")
    return {
        "summary": summary,
        "pages": len(groups),
        "thumbnails_made": thumbs.made,
        "thumbnails_reused": thumbs.reused,
        "without_media": unbuilt,
    }


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def _index_html(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    def table(title: str, d: dict[str, dict[str, Any]], id_: str) -> str:
        lines = "".join(
            f"<tr><td>{_e(k)}</td><td>{v['n']}</td><td>{v['scored']}</td><td>{_fmt(v['accuracy'])}</td></tr>"
            for k, v in d.items()
        )
        return (
            f'<table id="{id_}"><tr><th>{title}</th><th>trajectories</th><th>with a result</th><th>accuracy</th></tr>'
            f"{lines}</table>"
        )

    def select(key: str, label: str, values: list[tuple[str, str]]) -> str:
        opts = "".join(f'<option value="{_e(v)}">{_e(t)}</option>' for v, t in [("", "all"), *values])
        return f'<label>{label} <select id="f-{key}">{opts}</select></label>'

    def distinct(key: str) -> list[tuple[str, str]]:
        return [(v, v) for v in sorted({r[key] for r in rows})]

    o = summary["overall"]
    stops = sorted({s for r in rows for s in r["stops"]})
    filters = "".join(
        [
            select("stage", "stage", distinct("stage")),
            select("category", "category", distinct("category")),
            select("result", "result", [("right", "right"), ("wrong", "wrong"), ("unknown", "no result")]),
            select("needs_tool", "needs tool", distinct("needs_tool")),
            select("parse", "parse", [("failure", "parse failure"), ("parsed", "parsed")]),
            select("stop", "stop reason", [(s, s) for s in stops]),
            select("disagree", "orders", [("yes", "disagree"), ("no", "agree")]),
        ]
    )
    body = (
        "<h1>What the judge did</h1>"
        f'<p id="overall">{summary["items"]} items, {summary["trajectories"]} trajectories &middot; accuracy '
        f"{_fmt(o['accuracy'])} over {o['scored']} with a result &middot; tool-call rate "
        f"{_fmt(summary['tool_call_rate'])} &middot; parse failures {_fmt(summary['parse_failure_rate'])}</p>"
        f'<div class="tables" style="display:flex;gap:2em;align-items:flex-start">'
        f"{table('category', summary['by_category'], 'by-category')}{table('stage', summary['by_stage'], 'by-stage')}"
        f'</div><h2>Items</h2><div id="filters">{filters}</div><p id="count"></p>'
        '<table id="items"><thead><tr><th>item</th><th>stage</th><th>category</th><th>label</th><th>verdicts</th>'
        '<th>result</th><th>flags</th></tr></thead><tbody id="rows"></tbody></table><div id="pager"></div>'
    )
    data = json.dumps({"groups": rows}).replace("</", "<\\/")
    script = f'<script type="application/json" id="data">{data}</script><script>{INDEX_JS}</script>'
    return _page("mmreward view", body, script)
