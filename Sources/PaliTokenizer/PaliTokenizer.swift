// SentencePiece tokenizer (BPE model of Gemma/PaliGemma).
