"""Translation with a trained checkpoint: the :class:`~seq2seq.translation.translator.Translator`
and scoring (BLEU, chrF, exact match, BLEU by length)."""
