"""LoCoMo development set → WriteQA turns and questions, plus the retrieval metrics.

Implements the protocol of ``shared/bench/README.md`` exactly:

- one conversation = one user (``user_id = sample_id``); one LoCoMo session = one session,
  its date string kept with its turns;
- utterances 1+2, 3+4, … of a session form a turn: ``question`` = "Speaker: text" of the odd
  one, ``answer`` = "Speaker: text" of the next or "(no reply)"; a photo is appended as
  `` [shares a photo: <blip_caption>]``; the turn covers both dia_ids;
- questions of categories 1–4 that have evidence, asked with no session;
- recall@k = share of a question's evidence dia_ids covered by the top-k turns;
- ECR@B = share of questions whose packed context (≤ B cl100k_base tokens) holds at least one
  evidence utterance; ECRm@B = mean share of evidence dia_ids held.

Only ``conversation`` and ``qa`` are read: the set's summaries and observations are
annotations written with hindsight and are not something a production system has.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from context_engine.text import count_tokens

DEFAULT_PATH = Path("/work/shared/bench/locomo_dev.json")
CATEGORIES = (1, 2, 3, 4)
_DIA_ID = re.compile(r"D:?(\d+):(\d+)")


@dataclass(frozen=True)
class Utterance:
    dia_id: str
    speaker: str
    text: str  # "Speaker: text [shares a photo: …]"


@dataclass(frozen=True)
class Turn:
    turn_id: str  # "<sample_id>/<first dia_id>"
    user_id: str
    session: int
    seq: int  # position within the session, from 0
    gseq: int  # position within the user's whole history, from 0
    session_date: str  # LoCoMo's string, e.g. "1:56 pm on 8 May, 2023"
    question: str
    answer: str
    dia_ids: tuple[str, ...]
    utterances: tuple[Utterance, ...]

    @property
    def text(self) -> str:
        """What a turn is when rendered whole: question and answer on two lines."""
        return f"{self.question}\n{self.answer}"


@dataclass(frozen=True)
class Question:
    qid: str
    user_id: str
    text: str
    answer: str
    category: int
    evidence: tuple[str, ...]  # normalised dia_ids that exist in the conversation


@dataclass
class Conversation:
    user_id: str
    speakers: tuple[str, str]
    turns: list[Turn] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


def _render(utt: dict[str, object]) -> str:
    text = f"{utt['speaker']}: {utt['text']}"
    caption = utt.get("blip_caption")
    if caption:
        text += f" [shares a photo: {caption}]"
    return text


def normalize_evidence(raw: Iterable[str], known: set[str]) -> tuple[str, ...]:
    """Fix the set's few malformed ids ("D8:6; D9:17", "D:11:26") and drop ids that no
    utterance has (they cannot be retrieved by any method)."""
    out: list[str] = []
    for item in raw:
        for m in _DIA_ID.finditer(str(item)):
            dia = f"D{m.group(1)}:{m.group(2)}"
            if dia in known and dia not in out:
                out.append(dia)
    return tuple(out)


def load(path: Path | str = DEFAULT_PATH) -> list[Conversation]:
    data = json.loads(Path(path).read_text())
    convs: list[Conversation] = []
    for sample in data:
        conv_raw = sample["conversation"]
        user = sample["sample_id"]
        conv = Conversation(user_id=user, speakers=(conv_raw["speaker_a"], conv_raw["speaker_b"]))
        sessions = sorted(int(k.split("_")[1]) for k in conv_raw if re.fullmatch(r"session_\d+", k))
        gseq = 0
        for s in sessions:
            utts = conv_raw[f"session_{s}"]
            date = conv_raw.get(f"session_{s}_date_time", "")
            for seq, i in enumerate(range(0, len(utts), 2)):
                pair = [utts[i]] + ([utts[i + 1]] if i + 1 < len(utts) else [])
                rendered = tuple(Utterance(u["dia_id"], u["speaker"], _render(u)) for u in pair)
                conv.turns.append(
                    Turn(
                        turn_id=f"{user}/{pair[0]['dia_id']}",
                        user_id=user,
                        session=s,
                        seq=seq,
                        gseq=gseq,
                        session_date=date,
                        question=rendered[0].text,
                        answer=rendered[1].text if len(rendered) > 1 else "(no reply)",
                        dia_ids=tuple(u.dia_id for u in rendered),
                        utterances=rendered,
                    )
                )
                gseq += 1
        known = {d for t in conv.turns for d in t.dia_ids}
        for n, qa in enumerate(sample["qa"]):
            if qa.get("category") not in CATEGORIES:
                continue
            evidence = normalize_evidence(qa.get("evidence") or [], known)
            if not qa.get("evidence"):
                continue
            conv.questions.append(
                Question(
                    qid=f"{user}/q{n}",
                    user_id=user,
                    text=str(qa["question"]),
                    answer=str(qa.get("answer", "")),
                    category=int(qa["category"]),
                    evidence=evidence,
                )
            )
        convs.append(conv)
    return convs


# --- metrics -----------------------------------------------------------------------------


def recall_at_k(ranked: Sequence[Turn], evidence: Sequence[str], k: int) -> float:
    """Share of evidence dia_ids covered by the top-k turns (0 if there is no usable evidence)."""
    if not evidence:
        return 0.0
    covered = {d for t in ranked[:k] for d in t.dia_ids}
    return sum(1 for e in evidence if e in covered) / len(evidence)


@dataclass(frozen=True)
class Packed:
    """What a packer put into the context: rendered text pieces and the dia_ids they hold."""

    pieces: tuple[str, ...]
    dia_ids: frozenset[str]
    tokens: int


Packer = Callable[[Sequence[Turn], int], Packed]

# Pieces are joined by a blank line; the separator's tokens are counted too.
SEPARATOR = "\n\n"


def pack_whole_turns(ranked: Sequence[Turn], budget: int) -> Packed:
    """Baseline packer: whole turns in ranked order, skipping any that no longer fit."""
    sep = count_tokens(SEPARATOR)
    pieces: list[str] = []
    ids: set[str] = set()
    used = 0
    for turn in ranked:
        cost = count_tokens(turn.text) + (sep if pieces else 0)
        if used + cost > budget:
            continue
        pieces.append(turn.text)
        ids.update(turn.dia_ids)
        used += cost
    return Packed(tuple(pieces), frozenset(ids), used)


def ecr(packed: Packed, evidence: Sequence[str]) -> tuple[float, float]:
    """(hit, share): whether any evidence id is in the context, and the share that is."""
    if not evidence:
        return 0.0, 0.0
    held = sum(1 for e in evidence if e in packed.dia_ids)
    return (1.0 if held else 0.0), held / len(evidence)


def check_packed(packed: Packed, budget: int) -> None:
    """The packer's own count must be the real count of what it rendered, and within budget."""
    real = count_tokens(SEPARATOR.join(packed.pieces))
    if real > budget:
        raise AssertionError(f"packed context has {real} tokens > budget {budget}")
