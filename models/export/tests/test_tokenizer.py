"""The tokenizer: training is deterministic and LLaMA-shaped, the slow tokenizer is LISA's, and the ids come from
transformers 4.31.0 (the version LISA pins), which the committed TypeScript parity fixtures were made with."""

import filecmp
import json
from pathlib import Path

import pytest
import sentencepiece as spm
from lisa_export import tokenizer as T

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "test" / "fixtures" / "tokenizer"


@pytest.fixture(scope="module")
def tiny13(tmp_path_factory):
    return T.train_tiny_tokenizer(tmp_path_factory.mktemp("tok13"), "13b", 5, 1500)


def test_training_is_deterministic_and_seed_dependent(tmp_path, tiny13):
    again = T.train_tiny_tokenizer(tmp_path / "again", "13b", 5, 1500)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
        assert (again / name).read_bytes() == (tiny13 / name).read_bytes(), name
    other = T.train_tiny_tokenizer(tmp_path / "other", "13b", 6, 1500)
    assert (other / "tokenizer.model").read_bytes() != (tiny13 / "tokenizer.model").read_bytes()


def test_llama_sentencepiece_settings(tiny13):
    sp = spm.SentencePieceProcessor(model_file=str(tiny13 / "tokenizer.model"))
    assert sp.get_piece_size() == 1500
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert [sp.id_to_piece(i) for i in (3, 3 + 0x0A, 258)] == ["<0x00>", "<0x0A>", "<0xFF>"]  # byte fallback
    assert sp.encode("2023", out_type=str) == ["\u2581", "2", "0", "2", "3"]  # split_digits, dummy prefix
    assert sp.encode("a  b", out_type=str)[0].startswith("\u2581")
    assert sp.decode(sp.encode("\U0001f9d1 x\ty\n")) == "\U0001f9d1 x\ty\n"  # identity normalisation, bytes
    assert "<0x" in "".join(sp.encode("\U0001f9d1", out_type=str))


@pytest.mark.parametrize(
    "layout,expected",
    [("7b", ["<im_patch>", "<im_start>", "<im_end>", "[SEG]"]), ("13b", ["[SEG]", "<im_start>", "<im_end>"])],
)
def test_layout_added_tokens(tmp_path, layout, expected):
    assert T.layout_added_tokens(layout) == expected
    folder = T.train_tiny_tokenizer(tmp_path, layout, 1, 1000)
    added = json.loads((folder / "added_tokens.json").read_text())
    assert added == {tok: 1000 + i for i, tok in enumerate(expected)}
    tok = T.load_slow_tokenizer(folder)
    assert tok.padding_side == "right" and tok.model_max_length == 512 and tok.legacy is True
    assert len(tok) == 1000 + len(expected)
    # chat.py: seg_token_idx = tokenizer("[SEG]", add_special_tokens=False).input_ids[0]
    assert tok("[SEG]", add_special_tokens=False).input_ids[0] == added["[SEG]"]
    with pytest.raises(ValueError, match="unknown layout"):
        T.layout_added_tokens("70b")


def test_tokenizer_json_records_the_431_strip_rule(tmp_path, tiny13):
    T.write_tokenizer_json(tiny13, tmp_path / "tokenizer.json")
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    flags = {t["content"]: (t["id"], t["lstrip"], t["rstrip"], t["special"]) for t in data["added_tokens"]}
    assert flags["[SEG]"] == (1500, True, True, False)
    assert flags["<im_start>"] == (1501, True, True, False)
    assert flags["</s>"] == (2, False, False, True)
    assert data["model"]["type"] == "BPE" and data["model"]["byte_fallback"] is True


def test_build_prompt_matches_committed_cases():
    cases = json.loads((FIXTURES / "prompts.json").read_text())
    for case in cases:
        got = T.build_prompt(case["system"], case["history"], case["prompt"], case["assistant_prefix"])
        assert got == case["text"]
    assert T.build_prompt(None, [], "Hi?") == T.LLAVA_V1_SYSTEM + " USER: <im_start><image><im_end>\nHi? ASSISTANT:"


def test_tokenize_prompt_and_decode_are_the_431_goldens():
    folder = FIXTURES / "13b"
    goldens = json.loads((folder / "goldens.json").read_text())
    tok = T.load_slow_tokenizer(folder)
    cases = [c for c in goldens["cases"] if "<image>" in c["text"]][:6] + goldens["cases"][:4]
    assert T.tokenize_prompts(tok, [c["text"] for c in cases]) == [c["prompt_ids"] for c in cases]
    case = cases[0]
    assert T.tokenize_prompt(tok, case["text"]) == case["prompt_ids"]
    assert -200 in case["prompt_ids"] and case["prompt_ids"][0] == 1
    for c in cases[:3]:
        assert T.decode(tok, c["ids"]) == c["decode"]
    assert T.decode(tok, case["prompt_ids"]) == T.decode(tok, [i for i in case["prompt_ids"] if i != -200])


def test_431_and_457_still_disagree_as_documented():
    """docs/tokenizer.md: transformers 4.57's slow LlamaTokenizer(legacy=True) keeps the whitespace around LISA's
    added tokens where 4.31 strips it, and decodes differently; so ids come from the 4.31 venv. If this starts
    failing, the in-process tokenizer agrees again: update docs/tokenizer.md."""
    folder = FIXTURES / "13b"
    goldens = json.loads((folder / "goldens.json").read_text())
    found = T.compare_inprocess_with_reference(folder, goldens)
    assert found["prompt_ids_differ"] > 0 and found["random_decode_differ"] > 0, found
    assert T.USE_REFERENCE_VENV
    tok = T.load_slow_tokenizer(folder)
    ref = T.tokenize_prompt(tok, "USER: <im_start><image><im_end>\nthe word ASSISTANT: Sure, [SEG].</s>")
    pieces = tok.convert_ids_to_tokens([i for i in ref if i >= 0])
    end = pieces.index("<im_end>")
    assert pieces[end + 1] == "\u2581the"  # 4.31: "\n" stripped, the next word gets the dummy prefix, no <unk>
    assert 0 not in ref


def test_fixtures_regenerate_identically(tmp_path):
    """`models/export/venv run -m lisa_export.tokenizer fixtures --out test/fixtures/tokenizer` is reproducible."""
    T.write_fixtures(tmp_path, compare_inprocess=False)
    for rel in (
        "strings.json",
        "prompts.json",
        "7b/tokenizer.model",
        "7b/tokenizer.json",
        "7b/goldens.json",
        "13b/tokenizer.model",
        "13b/tokenizer.json",
        "13b/goldens.json",
        "13b/added_tokens.json",
    ):
        assert filecmp.cmp(tmp_path / rel, FIXTURES / rel, shallow=False), rel
    assert len(json.loads((tmp_path / "strings.json").read_text())) >= 200


@pytest.mark.parametrize("seed", [184, 185])
def test_small_vocabularies_train(tmp_path, seed):
    """export:tiny draws vocab sizes down to 768 with any seed: where 0.98 coverage of every line needs more
    character pieces than that, the lines with the rarest characters are left out instead of failing."""
    for vocab in (600, 768):
        folder = T.train_tiny_tokenizer(tmp_path / f"{vocab}", "7b", seed, vocab)
        sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        assert sp.get_piece_size() == vocab
        assert sp.decode(sp.encode("床前明月光 ok")) == "床前明月光 ok"
