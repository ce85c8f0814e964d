"""Train small SentencePiece models configured the way Gemma/PaliGemma's tokenizer is.

Used by the tokenizer goldens (make_tokenizer_goldens.py) and by the tiny-model goldens.
Gemma's tokenizer: BPE, byte fallback, digits split, identity normalization, no dummy prefix,
no whitespace collapsing, <loc0000>..<loc1023> and <seg000>..<seg127> as user-defined pieces, and
special pieces named as Gemma names them (<pad>=0, <eos>=1, <bos>=2, <unk>=3). With sentencepiece's
default names <s>/</s>, transformers' GemmaTokenizer silently adds a second BOS.
"""
import io
import os
import random

import sentencepiece as spm

LOC_SEG = [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)]

# A deterministic multilingual training corpus (no downloads): English prose from Python's own
# docstrings plus fixed sentences in several scripts, shuffled with a fixed seed.
_SENTENCES = [
    "a photo of a red circle on a blue background",
    "caption en", "detect cat ; dog", "segment red square", "answer en what color is the car?",
    "two green triangles and a yellow star", "the quick brown fox jumps over the lazy dog",
    "un chat noir dort sur le canapé", "der schnelle braune Fuchs springt über den faulen Hund",
    "el niño comió una manzana roja", "Это пример текста на русском языке",
    "これは日本語のテキストです", "这是一个中文句子", "이것은 한국어 문장입니다",
    "هذه جملة باللغة العربية", "זהו משפט בעברית", "यह हिंदी में एक वाक्य है",
    "Ελληνικά γράμματα και λέξεις", "ภาษาไทยเป็นภาษาที่สวยงาม", "Tiếng Việt có dấu",
    "1234 5678 90 3.14159 2026-11-22", "circle square triangle star hexagon ring cross",
    "red green blue yellow purple orange white black gray pink cyan brown",
]


def corpus_lines(n_doc_modules=60, seed=0):
    import pydoc  # noqa: F401  (imported for its docstrings)
    import sys
    lines = []
    for name in sorted(sys.modules)[:n_doc_modules]:
        doc = getattr(sys.modules[name], "__doc__", None) or ""
        lines += [l.strip() for l in doc.splitlines() if l.strip()]
    lines += _SENTENCES * 20
    rng = random.Random(seed)
    rng.shuffle(lines)
    return lines


def train(out_path, vocab_size=2000, dummy_prefix=False, collapse_whitespace=False, seed=0,
          lines=None, **trainer_options):
    """Train a Gemma-style BPE model and write it to out_path (a .model file).

    lines: the training sentences (default: corpus_lines(seed), which depends on the interpreter's
    loaded modules; pass a fixed list for byte-identical models). trainer_options: extra
    SentencePieceTrainer options (e.g. allow_whitespace_only_pieces=True).
    """
    if lines is None:
        lines = corpus_lines(seed=seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=0.9995,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=dummy_prefix,
        remove_extra_whitespaces=collapse_whitespace,
        normalization_rule_name="identity",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=LOC_SEG,
        num_threads=1,
        minloglevel=2,
        **trainer_options,
    )
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(model.getvalue())
    return out_path


if __name__ == "__main__":
    import sys
    p = train(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sp-test.model")
    sp = spm.SentencePieceProcessor(model_file=p)
    print(p, sp.get_piece_size(), sp.encode("caption en <loc0001> a red circle", out_type=str))
