"""LISA's tokenizer: a tiny SentencePiece LLaMA tokenizer trained from real text, the slow tokenizer as LISA loads it,
the llava_v1 prompt, LISA's ``tokenizer_image_token`` and the ``tokenizer.json`` that the TypeScript host loads.

The reference is transformers 4.31.0's slow ``LlamaTokenizer`` (what LISA pins). Token ids and decodes that must be
exact (``tokenize_prompt``, ``decode``) come from that version, run in its own small venv (``models/export/tok431``)
when the in-process transformers disagrees with it; see docs/tokenizer.md for the differences found.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE / "corpus"
TOK431 = HERE.parent / "tok431"

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_INDEX = -200
SEG_TOKEN = "[SEG]"
IM_START = "<im_start>"
IM_END = "<im_end>"
IM_PATCH = "<im_patch>"

LAYOUT_ADDED_TOKENS = {
    # xinlai/LISA-7B-v1 added_tokens.json: <im_patch>=32000, <im_start>=32001, <im_end>=32002, [SEG]=32003
    "7b": [IM_PATCH, IM_START, IM_END, SEG_TOKEN],
    # xinlai/LISA-13B-llama2-v1 added_tokens.json: [SEG]=32000, <im_start>=32001, <im_end>=32002
    "13b": [SEG_TOKEN, IM_START, IM_END],
}

# llava_v1 (conv_templates["llava_v1"] in LISA's model/llava/conversation.py)
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
LLAVA_V1_ROLES = ("USER", "ASSISTANT")
LLAVA_V1_SEP = " "
LLAVA_V1_SEP2 = "</s>"
IMAGE_TEXT = IM_START + IMAGE_TOKEN + IM_END + "\n"  # "<image>\n" with mm_use_im_start_end (forced True by chat.py)

# The corpus files, in the fixed order in which they are fed to the trainer.
CORPUS_FILES = ("en_pydoc_topics.txt", "zh_tang300.txt", "zh_song100.txt")


def layout_added_tokens(layout: str) -> list[str]:
    """The added tokens of a LISA layout, in id order (the first gets id = SentencePiece vocab size)."""
    try:
        return list(LAYOUT_ADDED_TOKENS[layout])
    except KeyError:
        raise ValueError(f"unknown layout {layout!r}: expected one of {sorted(LAYOUT_ADDED_TOKENS)}") from None


# ----------------------------------------------------------------------------------------------------------------------
# Training


def corpus_lines(seed: int) -> list[str]:
    """The training sentences: every non-empty line of the committed corpus, in file order; the seed drops a
    deterministic tenth of the paragraphs so that different seeds give (slightly) different vocabularies."""
    rng = random.Random(seed)
    lines: list[str] = []
    for name in CORPUS_FILES:
        text = (CORPUS_DIR / name).read_text(encoding="utf-8")
        for para in text.split("\n\n"):
            keep = rng.random() >= 0.1
            if not keep:
                continue
            lines.extend(line for line in para.split("\n") if line.strip())
    return lines


def _char_counts(lines: Sequence[str]):
    from collections import Counter

    counts: Counter = Counter()
    for line in lines:
        counts.update(line.replace(" ", "\u2581"))
        counts["\u2581"] += 1  # dummy prefix
    return counts


def _required_chars(counts, coverage: float) -> int:
    """How many characters sentencepiece keeps as pieces for a coverage (most frequent first)."""
    total = sum(counts.values())
    acc, n = 0, 0
    for v in sorted(counts.values(), reverse=True):
        acc += v
        if acc > coverage * total:
            break
        n += 1
    return n


def _character_coverage(lines: Sequence[str], vocab_size: int) -> float:
    """LLaMA uses 0.99995, which with Chinese text needs more single-character pieces than a tiny vocab has. Use the
    largest coverage (sentencepiece accepts 0.98 to 1) whose required characters leave at least a quarter of the
    pieces (after the 3 specials and 256 byte pieces) for merges; rarer characters go through byte fallback, as in
    LLaMA."""
    counts = _char_counts(lines)
    total = sum(counts.values())
    budget = max(1, (vocab_size - 259) * 3 // 4)
    ordered = sorted(counts.values(), reverse=True)
    covered = sum(ordered[:budget])
    cov = min(0.99995, (covered / total) - 1e-6)
    return max(0.98, float(f"{cov:.6f}"))


def _fit_lines(lines: list[str], vocab_size: int) -> list[str]:
    """For the smallest vocabularies, where even 0.98 coverage needs more character pieces than there is room for,
    drop the lines that contain the rarest characters (deterministically) until the required characters fit with a
    margin for merges. Only used when training on every line fails."""
    margin = 32
    k = 0
    while True:
        counts = _char_counts(lines)
        need = _required_chars(counts, _character_coverage(lines, vocab_size))
        if need + 259 + margin <= vocab_size:
            return lines
        k += 1
        rare = {ch for ch, c in counts.items() if c <= k}
        lines = [line for line in lines if not any(ch in rare for ch in line)]
        if not lines or k > 10000:
            raise ValueError(f"vocab_size {vocab_size} is too small for a byte-fallback LLaMA tokenizer")


def train_tiny_tokenizer(out_dir: Path, layout: str, seed: int, vocab_size: int) -> Path:
    """Train a SentencePiece BPE model with LLaMA's settings on the committed corpus and write it as a slow LLaMA
    tokenizer folder with the layout's added tokens. Deterministic for the same arguments. Returns ``out_dir``."""
    import sentencepiece as spm

    added = layout_added_tokens(layout)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = corpus_lines(seed)
    try:
        model = _train_sentencepiece(lines, seed, vocab_size)
    except RuntimeError as e:
        if "required_chars" not in str(e):
            raise
        # the smallest vocabularies: train on the lines without the rarest characters (deterministic)
        model = _train_sentencepiece(_fit_lines(lines, vocab_size), seed, vocab_size)
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    base = sp.get_piece_size()
    if base != vocab_size:
        raise RuntimeError(f"sentencepiece made {base} pieces, asked for {vocab_size}")
    _write_slow_files(out_dir, {tok: base + i for i, tok in enumerate(added)})
    return out_dir


def _train_sentencepiece(lines: list[str], seed: int, vocab_size: int) -> io.BytesIO:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=_character_coverage(lines, vocab_size),
        byte_fallback=True,
        split_digits=True,
        split_by_unicode_script=True,
        split_by_number=True,
        split_by_whitespace=True,
        treat_whitespace_as_suffix=False,
        allow_whitespace_only_pieces=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        unk_surface=" \u2047 ",
        max_sentence_length=4192,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        shrinking_factor=0.75,
        num_sub_iterations=2,
        hard_vocab_limit=True,
        vocabulary_output_piece_score=True,
        num_threads=1,
        minloglevel=2,
    )
    return model


def _added_token(content: str) -> dict:
    return {
        "__type": "AddedToken",
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    }


def _write_slow_files(out_dir: Path, added: dict[str, int]) -> None:
    """The files of a LISA checkpoint's slow tokenizer as transformers 4.31 saves them (LLaVA/Vicuna lineage:
    bos/eos/unk as AddedToken objects without strip flags, pad = "<unk>" set by LISA, the added tokens in
    added_tokens.json only)."""
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": _added_token("<s>"),
        "clean_up_tokenization_spaces": False,
        "eos_token": _added_token("</s>"),
        "model_max_length": 512,
        "pad_token": None,
        "padding_side": "right",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": _added_token("<unk>"),
    }
    special = {
        "bos_token": {k: v for k, v in _added_token("<s>").items() if k != "__type"},
        "eos_token": {k: v for k, v in _added_token("</s>").items() if k != "__type"},
        "pad_token": "<unk>",
        "unk_token": {k: v for k, v in _added_token("<unk>").items() if k != "__type"},
    }
    _write_json(out_dir / "tokenizer_config.json", config)
    _write_json(out_dir / "special_tokens_map.json", special)
    _write_json(out_dir / "added_tokens.json", dict(sorted(added.items(), key=lambda kv: kv[1])))


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------------
# The slow tokenizer, in process (transformers of the exporter venv)


def load_slow_tokenizer(folder: Path):
    """The slow LlamaTokenizer as LISA's chat.py loads it (use_fast=False, padding right, model_max_length 512,
    legacy behaviour). The folder is remembered so that reference calls can go to transformers 4.31."""
    import transformers

    kwargs = dict(model_max_length=512, padding_side="right", use_fast=False)
    if _version_tuple(transformers.__version__) >= (4, 31):
        kwargs["legacy"] = True
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), **kwargs)
    tok.pad_token = tok.unk_token
    tok.lisa_folder = str(Path(folder).resolve())
    return tok


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _folder_of(tokenizer) -> str:
    folder = getattr(tokenizer, "lisa_folder", None) or getattr(tokenizer, "name_or_path", None)
    if not folder or not Path(folder, "tokenizer.model").is_file():
        raise ValueError("the tokenizer was not loaded from a local folder by load_slow_tokenizer")
    return str(Path(folder).resolve())


def tokenize_prompt_inprocess(tokenizer, text: str) -> list[int]:
    """LISA's tokenizer_image_token (model/llava/mm_utils.py) with whatever tokenizer object is given."""
    chunks = [tokenizer(chunk).input_ids for chunk in text.split(IMAGE_TOKEN)]
    ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    sep = [IMAGE_TOKEN_INDEX] * (offset + 1)
    inserted: list[list[int]] = []
    for i, chunk in enumerate(chunks):
        inserted.append(chunk)
        if i != len(chunks) - 1:
            inserted.append(sep)
    for part in inserted:
        ids.extend(part[offset:])
    return ids


# ----------------------------------------------------------------------------------------------------------------------
# The reference: transformers 4.31.0 in its own venv


def _tok431_python() -> list[str]:
    return [str(TOK431 / "venv"), "run"]


def reference_batch(folder: Path | str, requests: list[dict]) -> list:
    """Run requests through transformers 4.31.0's slow LlamaTokenizer (models/export/tok431). Each request is
    {"op": "prompt", "text"} -> ids with -200, {"op": "encode", "text", "add_bos"} -> ids,
    {"op": "decode", "ids"} -> str, {"op": "tokens", "text"} -> pieces."""
    payload = json.dumps({"folder": str(Path(folder).resolve()), "requests": requests})
    proc = subprocess.run(
        _tok431_python() + [str(TOK431 / "ref.py")],
        input=payload.encode(),
        capture_output=True,
        env={**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )
    if proc.returncode != 0:
        raise RuntimeError("transformers 4.31 reference tokenizer failed:\n" + proc.stderr.decode(errors="replace"))
    return json.loads(proc.stdout.decode())["results"]


@functools.lru_cache(maxsize=4096)
def _reference_cached(folder: str, op: str, arg: str) -> str:
    if op == "prompt":
        req = {"op": "prompt", "text": arg}
    else:
        req = {"op": "decode", "ids": json.loads(arg)}
    return json.dumps(reference_batch(folder, [req])[0])


def tokenize_prompt(tokenizer, text: str) -> list[int]:
    """LISA's tokenizer_image_token: split on "<image>", tokenize each chunk with BOS, keep one BOS, drop each chunk's
    first id, join with -200. Ids are those of transformers 4.31.0's slow tokenizer (see docs/tokenizer.md)."""
    if USE_REFERENCE_VENV:
        return json.loads(_reference_cached(_folder_of(tokenizer), "prompt", text))
    return tokenize_prompt_inprocess(tokenizer, text)


def tokenize_prompts(tokenizer, texts: Iterable[str]) -> list[list[int]]:
    """tokenize_prompt for many texts in one reference call."""
    texts = list(texts)
    if USE_REFERENCE_VENV:
        return reference_batch(_folder_of(tokenizer), [{"op": "prompt", "text": t} for t in texts])
    return [tokenize_prompt_inprocess(tokenizer, t) for t in texts]


def decode(tokenizer, ids: Sequence[int]) -> str:
    """Decode as chat.py does: drop the image placeholder, skip_special_tokens=False."""
    ids = [int(i) for i in ids if int(i) != IMAGE_TOKEN_INDEX]
    if USE_REFERENCE_VENV:
        return json.loads(_reference_cached(_folder_of(tokenizer), "decode", json.dumps(ids)))
    return tokenizer.decode(ids, skip_special_tokens=False)


# Whether token ids / decodes come from the transformers 4.31 venv: set from the comparison in docs/tokenizer.md.
USE_REFERENCE_VENV = os.environ.get("LISA_TOKENIZER_INPROCESS", "") != "1"


# ----------------------------------------------------------------------------------------------------------------------
# tokenizer.json for the TypeScript host


def _strip_flags_431(slow_folder: Path) -> dict[str, tuple[bool, bool]]:
    """(lstrip, rstrip) of every token that transformers 4.31's slow tokenizer never splits, as its ``tokenize`` applies
    them: bos/eos/unk given as AddedToken objects keep their own flags; special tokens given as plain strings and every
    token of added_tokens.json (LISA's <im_start>, <im_end>, <im_patch>, [SEG]) strip the whitespace on both sides."""
    folder = Path(slow_folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    smap_path = folder / "special_tokens_map.json"
    smap = json.loads(smap_path.read_text(encoding="utf-8")) if smap_path.is_file() else {}
    flags: dict[str, tuple[bool, bool]] = {}
    extended: dict[str, tuple[bool, bool]] = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = smap.get(key, config.get(key))
        if isinstance(value, dict):
            extended[value["content"]] = (bool(value.get("lstrip")), bool(value.get("rstrip")))
        elif isinstance(value, str):
            flags.setdefault(value, (True, True))
    for value in smap.get("additional_special_tokens", []) or []:
        if isinstance(value, dict):
            extended[value["content"]] = (bool(value.get("lstrip")), bool(value.get("rstrip")))
        else:
            flags.setdefault(value, (True, True))
    added_path = folder / "added_tokens.json"
    if added_path.is_file():
        for tok in json.loads(added_path.read_text(encoding="utf-8")):
            flags.setdefault(tok, (True, True))
    flags.update(extended)  # an AddedToken object wins (4.31 looks the token up among the extended specials first)
    return flags


def write_tokenizer_json(slow_folder: Path, out_path: Path) -> None:
    """Convert the slow tokenizer to the Hugging Face tokenizers JSON (LlamaConverter, legacy) with the layout's added
    tokens. ``lstrip``/``rstrip`` of each added token say what 4.31's slow ``tokenize`` strips next to it; the
    TypeScript host uses the vocab, merges and added tokens and reproduces the 4.31 slow tokenizer itself
    (docs/tokenizer.md)."""
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import LlamaConverter

    slow = load_slow_tokenizer(Path(slow_folder))
    fast = LlamaConverter(slow).converted()
    flags = _strip_flags_431(Path(slow_folder))
    added = json.loads(Path(slow_folder, "added_tokens.json").read_text(encoding="utf-8"))
    specials = []
    for tok in ("<unk>", "<s>", "</s>"):
        lstrip, rstrip = flags.get(tok, (False, False))
        specials.append(AddedToken(tok, lstrip=lstrip, rstrip=rstrip, normalized=False, special=True))
    fast.add_special_tokens(specials)
    for tok, idx in sorted(added.items(), key=lambda kv: kv[1]):
        lstrip, rstrip = flags.get(tok, (True, True))
        fast.add_tokens([AddedToken(tok, lstrip=lstrip, rstrip=rstrip, normalized=False, special=False)])
        if fast.token_to_id(tok) != idx:
            raise RuntimeError(f"added token {tok} got id {fast.token_to_id(tok)}, expected {idx}")
    data = json.loads(fast.to_str())
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------------
# The prompt (llava_v1, docs/bundle-format.md "The prompt")


def build_prompt(
    system: str | None,
    history: Sequence[tuple[str, str]] | Sequence[Sequence[str]],
    prompt: str,
    assistant_prefix: str = "",
) -> str:
    """``{system} USER: <im_start><image><im_end>\\n{u1} ASSISTANT: {a1}</s>USER: {prompt} ASSISTANT:`` (llava_v1,
    SeparatorStyle.TWO: sep " " after user turns, sep2 "</s>" after assistant turns); the image text only in the first
    user message; an assistant prefix is appended after "ASSISTANT:" with one space."""
    system = LLAVA_V1_SYSTEM if system is None else system
    user, assistant = LLAVA_V1_ROLES
    turns = [(u, a) for u, a in history] + [(prompt, None)]
    seps = (LLAVA_V1_SEP, LLAVA_V1_SEP2)
    ret = system + seps[0]
    msg_index = 0
    for i, (u, a) in enumerate(turns):
        if i == 0:
            # chat.py: "<image>\n" + prompt, then every "<image>" becomes "<im_start><image><im_end>"
            u = (IMAGE_TOKEN + "\n" + u).replace(IMAGE_TOKEN, IM_START + IMAGE_TOKEN + IM_END)
        for role, message in ((user, u), (assistant, a)):
            if message:
                ret += role + ": " + message + seps[msg_index % 2]
            else:
                ret += role + ":"
            msg_index += 1
    if assistant_prefix:
        ret += " " + assistant_prefix
    return ret


# ----------------------------------------------------------------------------------------------------------------------
# Parity fixtures for the TypeScript tokenizer (test/fixtures/tokenizer/)

FIXTURE_LAYOUTS = (("7b", 7, 1000), ("13b", 13, 2000))  # layout, seed, vocab size


def fixture_prompt_cases() -> list[dict]:
    """build_prompt inputs covering the template: defaults, custom system, history, assistant prefix, Chinese."""
    cases = [
        dict(system=None, history=[], prompt="What is the food in this image? Please output segmentation mask."),
        dict(system=None, history=[], prompt="Can you segment the dog in this image?", assistant_prefix="Sure, [SEG]."),
        dict(system=None, history=[["Where is the cat?", "Sure, it is [SEG]."]], prompt="And the chair next to it?"),
        dict(
            system=None,
            history=[["Segment the car.", "Sure, [SEG]."], ["Now the road.", "It is [SEG]."]],
            prompt="Both trees, please.",
            assistant_prefix="Sure, [SEG] and [SEG].",
        ),
        dict(system=None, history=[], prompt="请分割图中的猫。", assistant_prefix="好的，[SEG]。"),
        dict(system=None, history=[["图中有什么？", "一只狗 [SEG]。"]], prompt="它在做什么？请解释。"),
        dict(system="You are a careful segmentation assistant.", history=[], prompt="  spaced  prompt  "),
        dict(system="", history=[], prompt="Empty system prompt."),
        dict(system=None, history=[["", ""]], prompt="Empty history turn."),
        dict(system=None, history=[], prompt="Two images? <image> should not appear twice."),
        dict(system=None, history=[], prompt="Line one\nLine two\n\nLine four 🐈 42"),
        dict(system=None, history=[], prompt=""),
    ]
    for case in cases:
        case.setdefault("assistant_prefix", "")
        case["text"] = build_prompt(case["system"], case["history"], case["prompt"], case["assistant_prefix"])
    return cases


def fixture_strings() -> list[str]:
    """The parity corpus: >= 200 strings of English, Chinese, emoji, whitespace, digits, literal special tokens and
    whole LISA prompts."""
    en = [
        "Hello world",
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "What is the food in this image? Please output segmentation mask.",
        "Sure, [SEG].",
        "Sure, it is [SEG].",
        "It is [SEG].",
        "Sure, the segmentation result is [SEG].",
        "A chat between a curious human and an artificial intelligence assistant.",
        "The assistant gives helpful, detailed, and polite answers to the human's questions.",
        "Assignment statements are used to (re)bind names to values and to modify attributes or items of mutable "
        "objects:",
        "Don't panic; it's only a test, isn't it?",
        "e.g. i.e. etc. Mr. Smith's dog.",
        "CamelCaseIdentifier snake_case_identifier kebab-case-identifier",
        "UPPER CASE TEXT",
        "lower case text",
        "unicode: café naïve résumé coöperate",
        "e\u0301 (combining accent) vs \u00e9",
        "Ünïcödé Ångström ﬁ ligature",
        "Quotes: \"double\" 'single' `back` «guillemets» “curly” ‘curly’",
        "Math: x² + y² = z², ∑ᵢ aᵢ ≤ ∞, π ≈ 3.14159",
        "Symbols: @#$%^&*()_+-=[]{}|;':\",./<>?~`",
        "Tabs\tbetween\twords",
        "CRLF line\r\nends\r\n",
        "https://example.com/path?query=1&other=2#frag",
        "email@example.org",
        "C:\\Windows\\System32",
        "def f(x):\n    return x * 2\n",
        "if __debug__:\n    if not expression: raise AssertionError",
        "Where is the person wearing a red hat? Segment them.",
        "Which object would you use to cut paper?",
        "What in this picture can be used to keep warm in winter?",
        "the object that is farthest from the camera",
        "supercalifragilisticexpialidocious",
        "antidisestablishmentarianism",
        "a",
        "I",
        ".",
        ",",
        "?!",
        "...",
        "Привет, мир!",
        "Γειά σου Κόσμε",
        "مرحبا بالعالم",
        "שלום עולם",
        "नमस्ते दुनिया",
        "こんにちは世界",
        "안녕하세요 세계",
        "Hello 世界 mixed 混合 text",
        "ThisIsA\u2581LiteralSpiecePiece ▁▁ ▁x",
        "\u2047 unk surface \u2047",
    ]
    zh = [
        "床前明月光，疑是地上霜。",
        "举头望明月，低头思故乡。",
        "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
        "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
        "国破山河在，城春草木深。",
        "大漠孤烟直，长河落日圆。",
        "明月几时有？把酒问青天。",
        "大江东去，浪淘尽，千古风流人物。",
        "请分割图中的猫。",
        "图中哪个物体可以用来切纸？",
        "这张图片里有什么？请输出分割掩码。",
        "好的，[SEG]。",
        "它是[SEG]。",
        "左边的人穿着红色的衣服。",
        "我们今天去公园散步，天气很好。",
        "人工智能助手",
        "计算机视觉与自然语言处理",
        "深度学习模型的推理速度",
        "龘靐齉爩",
        "𠀀𠀁𠀂 (CJK Extension B)",
        "繁體中文與簡體中文",
        "一二三四五六七八九十",
        "１２３ 全角数字",
        "标点：，。！？；：“”‘’（）【】《》",
        "中文 English 混排 123",
        "。",
        "，",
        "的",
    ]
    emoji = [
        "😀",
        "😀😃😄",
        "I love 🍕 and 🍣!",
        "👍🏽",
        "👨‍👩‍👧‍👦 family",
        "🇨🇳🇺🇸🇫🇷",
        "❤️",
        "⭐ star",
        "🐈‍⬛ black cat",
        "emoji at end 🎉",
        "🎉 emoji at start",
        "a😀b",
        "😀 [SEG] 😀",
        "🏳️‍🌈",
        "©®™",
        "\U0001f9d1\u200d\U0001f680",
    ]
    ws = [
        "",
        " ",
        "  ",
        "   ",
        "\t",
        "\n",
        "\n\n",
        "\r\n",
        " \n ",
        "a  b",
        "a   b",
        "a    b",
        "a\u3000b",
        " leading",
        "  two leading",
        "trailing ",
        "trailing two  ",
        "  both  ",
        "\tleading tab",
        "trailing newline\n",
        "\nleading newline",
        "multiple\n\n\nnewlines",
        "mixed \t \n whitespace",
        "nbsp\u00a0here",
        "zwsp\u200bhere",
        "a\u2028b",
        "a\x0bb\x0cc",
        "a\x1cb\x1dc\x1ed\x1fe",
        "a\x85b",
        "\ufeffBOM at start",
        "end with space before token [SEG]",
    ]
    digits = [
        "0",
        "7",
        "42",
        "12345",
        "3.14159",
        "2023-10-21",
        "1,000,000",
        "-200",
        "+86 138 0013 8000",
        "v4.31.0",
        "0x1F600",
        "1e-6",
        "12:34:56",
        "100%",
        "$9.99",
        "2^10 = 1024",
        "007",
        "1st 2nd 3rd 4th",
        "٣٤٥ Arabic digits",
    ]
    special = [
        "[SEG]",
        "<im_start>",
        "<im_end>",
        "<im_patch>",
        "<image>",
        "</s>",
        "<s>",
        "<unk>",
        "[SEG][SEG]",
        "[SEG] [SEG]",
        "[SEG]  [SEG]",
        " [SEG] ",
        "a [SEG] b",
        "a[SEG]b",
        "a  [SEG]  b",
        "a\n[SEG]\nb",
        "Sure, [SEG].</s>",
        "Sure, [SEG]. </s>",
        "x</s>y",
        "x </s> y",
        "x  </s>  y",
        "</s></s>",
        "</s> </s>",
        "<s>x",
        "<s> x",
        "x<s>",
        "<unk>word",
        "<unk> word",
        "word<unk>",
        "word <unk>",
        "<unk><unk>",
        "<im_start><im_end>",
        "<im_start> <im_end>",
        "<im_start><image><im_end>",
        "<im_start><image><im_end>\nWhat",
        "<im_start><image><im_end>\n What",
        "<im_start><image><im_end>\n\nWhat",
        "<im_end>\nthe word after im_end",
        "<im_end> \n word",
        "[SEG",
        "SEG]",
        "[seg]",
        "<im_start",
        "im_end>",
        "<<im_end>>",
        "[[SEG]]",
        "<im_<s>",
        "<im_start<im_end>",
        "</s",
        "<s",
        "< s >",
        "<im_patch><im_start><im_end>[SEG]",
        "[SEG]</s>",
        "[SEG].</s>",
        "text [SEG]\t",
        "\t[SEG]\n",
        "ASSISTANT: Sure, [SEG].</s>",
        "USER: hi ASSISTANT: hello</s>USER:",
        "<image>",
        "<image><image>",
        "a<image>b",
        " <image> ",
        "<image>\n",
        "\n<image>",
        "[SEG]<image>[SEG]",
        "</s><image></s>",
        "🐈<image>猫",
        "<image> leading image",
        "trailing image <image>",
    ]
    prompts = [case["text"] for case in fixture_prompt_cases()]
    prompts += [
        build_prompt(None, [], "What is the food in this image? Please output segmentation mask."),
        build_prompt(None, [], "What is the food in this image? Please output segmentation mask.")
        + " Sure, [SEG].</s>",
        build_prompt(None, [("Where is the cat?", "Sure, [SEG].")], "Why?") + " Because it is on the sofa.</s>",
        build_prompt(None, [], "请问图中可以用来切纸的物体是什么？请输出分割掩码。") + " 好的，[SEG]。</s>",
        build_prompt(None, [], "Segment the 🐈 and the 🐕 please", "Sure, [SEG] and [SEG]."),
    ]
    strings = en + zh + emoji + ws + digits + special + prompts
    # long texts from the training corpus itself (real prose and poems, several lines, whitespace runs)
    for name in CORPUS_FILES:
        paras = [p for p in (CORPUS_DIR / name).read_text(encoding="utf-8").split("\n\n") if p.strip()]
        for k in range(0, len(paras), max(1, len(paras) // 6))[:6]:
            strings.append(paras[k][:600])
    seen, out = set(), []
    for s in strings:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def _random_decode_cases(vocab: int, seed: int, n: int = 60) -> list[list[int]]:
    """Id sequences that no encoder produces: byte pieces cut mid-character, specials and added tokens anywhere."""
    rng = random.Random(seed)
    cases: list[list[int]] = [
        [],
        [0],
        [1],
        [2],
        [1, 2],
        [2, 1],
        [vocab],
        [vocab, vocab + 1],
        [3],
        [3 + 0xE5],
        [3 + 0xE5, 3 + 0xBA],
        [3 + 0xE5, 3 + 0xBA, 3 + 0x8A],
        [3 + 0xF0, 3 + 0x9F, 3 + 0x98],
        [3 + 0x0A],
        [3 + 0x20],
        [3 + 0xFF, 3 + 0x41],
        [3 + 0xED, 3 + 0xA0, 3 + 0x80],
    ]
    specials = [0, 1, 2]
    while len(cases) < n:
        length = rng.randint(1, 16)
        seq = []
        for _ in range(length):
            r = rng.random()
            if r < 0.15:
                seq.append(rng.choice(specials))
            elif r < 0.3:
                seq.append(vocab + rng.randrange(3))
            elif r < 0.55:
                seq.append(3 + rng.randrange(256))
            else:
                seq.append(259 + rng.randrange(vocab - 259))
        cases.append(seq)
    return cases


def compare_inprocess_with_reference(folder: Path, goldens: dict) -> dict:
    """How the exporter venv's transformers (4.57) slow LlamaTokenizer(legacy=True) differs from the 4.31 goldens, on
    a copy of the folder as a LISA checkpoint has it (no tokenizer.json: with one, 4.57 reads the added tokens' strip
    flags from it)."""
    import shutil
    import tempfile

    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
            shutil.copy(Path(folder) / name, Path(tmp) / name)
        tok = load_slow_tokenizer(Path(tmp))
        cases = goldens["cases"]
        diff = [c["text"] for c in cases if tokenize_prompt_inprocess(tok, c["text"]) != c["prompt_ids"]]
        ddiff = [c for c in cases if tok.decode(c["ids"]) != c["decode"]]
        rdiff = [c for c in goldens["decode_cases"] if tok.decode(c["ids"]) != c["text"]]
        return {
            "transformers": transformers.__version__,
            "strings": len(cases),
            "prompt_ids_differ": len(diff),
            "examples": diff[:8],
            "decode_differ": len(ddiff),
            "decode_examples": [
                {"ids": c["ids"], "4.31": c["decode"], "inprocess": tok.decode(c["ids"])} for c in ddiff[:3]
            ],
            "random_decode_cases": len(goldens["decode_cases"]),
            "random_decode_differ": len(rdiff),
            "random_decode_examples": [
                {"ids": c["ids"], "4.31": c["text"], "inprocess": tok.decode(c["ids"])} for c in rdiff[:3]
            ],
        }


def write_fixtures(out_dir: Path, compare_inprocess: bool = True) -> dict:
    """Write test/fixtures/tokenizer/: strings.json, prompts.json and, per layout, the slow tokenizer folder, its
    tokenizer.json and goldens.json from transformers 4.31.0. Returns a summary of the 4.31 vs in-process comparison."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    strings = fixture_strings()
    prompt_cases = fixture_prompt_cases()
    _write_json(out_dir / "strings.json", strings)
    _write_json(out_dir / "prompts.json", prompt_cases)
    summary = {}
    for layout, seed, vocab in FIXTURE_LAYOUTS:
        folder = out_dir / layout
        train_tiny_tokenizer(folder, layout, seed, vocab)
        write_tokenizer_json(folder, folder / "tokenizer.json")
        n_added = len(layout_added_tokens(layout))
        decode_cases = _random_decode_cases(vocab, seed)
        requests = []
        for s in strings:
            requests += [
                {"op": "encode", "text": s, "add_bos": True},
                {"op": "encode", "text": s, "add_bos": False},
                {"op": "prompt", "text": s},
            ]
        ref = reference_batch(folder, requests)
        encoded = ref[0::3]
        decode_reqs = [{"op": "decode", "ids": ids} for ids in encoded] + [
            {"op": "decode", "ids": ids} for ids in decode_cases
        ]
        decoded = reference_batch(folder, decode_reqs)
        cases = []
        for i, s in enumerate(strings):
            cases.append(
                {
                    "text": s,
                    "ids": ref[3 * i],
                    "ids_no_bos": ref[3 * i + 1],
                    "prompt_ids": ref[3 * i + 2],
                    "decode": decoded[i],
                }
            )
        goldens = {
            "format": "lisa-tokenizer-goldens/1",
            "reference": "transformers 4.31.0 slow LlamaTokenizer (models/export/tok431)",
            "layout": layout,
            "seed": seed,
            "vocab_size": vocab,
            "added_tokens": layout_added_tokens(layout),
            "cases": cases,
            "decode_cases": [{"ids": ids, "text": decoded[len(strings) + j]} for j, ids in enumerate(decode_cases)],
        }
        _write_json(folder / "goldens.json", goldens)
        if compare_inprocess:
            summary[layout] = compare_inprocess_with_reference(folder, goldens)
            summary[layout]["vocab"] = vocab + n_added
    return summary


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m lisa_export.tokenizer")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures", help="regenerate test/fixtures/tokenizer (goldens from transformers 4.31.0)")
    f.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("train", help="train a tiny tokenizer folder")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--layout", choices=sorted(LAYOUT_ADDED_TOKENS), required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--vocab-size", type=int, default=2000)
    args = ap.parse_args(argv)
    if args.cmd == "fixtures":
        print(json.dumps(write_fixtures(args.out), ensure_ascii=False, indent=1))
    else:
        folder = train_tiny_tokenizer(args.out, args.layout, args.seed, args.vocab_size)
        write_tokenizer_json(folder, folder / "tokenizer.json")
        print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
