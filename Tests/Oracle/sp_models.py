"""Train small SentencePiece models configured the way Gemma/PaliGemma's tokenizer is.

Used by the tokenizer goldens (make_tokenizer_goldens.py) and by the tiny-model goldens.
Gemma's tokenizer: BPE, byte fallback, digits split, identity normalization, no dummy prefix,
no whitespace collapsing, <loc0000>..<loc1023> and <seg000>..<seg127> as user-defined pieces, and
special pieces named as Gemma names them (<pad>=0, <eos>=1, <bos>=2, <unk>=3). With sentencepiece's
default names <s>/</s>, transformers' GemmaTokenizer silently adds a second BOS.
"""
import io
import os

import sentencepiece as spm

LOC_SEG = [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)]

# The training corpus is a fixed, committed text: Tests/Oracle/corpus.txt (UTF-8, one training sentence
# per line, split on "\n" only; about 290 KB written for this project: captions, PaliGemma task prompts
# and answers with <loc>/<seg> tokens, VQA, OCR-like strings, sentences in ~30 languages, code, numbers,
# emoji, whitespace runs and tabs). Nothing depends on the interpreter, the machine or the network, so
# sentencepiece (pinned in requirements.txt) trains byte-identical models everywhere. Editing the file
# changes every fixture tokenizer: re-run make_tokenizer_goldens.py and make_model_goldens.py.
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.txt")


def corpus_lines(path=CORPUS):
    """The training sentences of corpus.txt, in file order (no line contains "\n")."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    return [line for line in text.split("\n") if line]


def train(out_path, vocab_size=3000, dummy_prefix=False, collapse_whitespace=False, lines=None,
          **trainer_options):
    """Train a Gemma-style BPE model and write it to out_path (a .model file).

    lines: the training sentences (default: corpus_lines(), the committed corpus.txt). Deterministic:
    the same lines give a byte-identical model (one trainer thread, no paths recorded).
    trainer_options: extra SentencePieceTrainer options (e.g. allow_whitespace_only_pieces=True).
    On corpus.txt vocab_size must be at least ~2350 (4 specials + 1152 <loc>/<seg> + 256 bytes + the
    ~920 characters within character_coverage) before any merge is learned.
    """
    if lines is None:
        lines = corpus_lines()
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
