"""The benchmark, ``python -m seq2seq bench`` (:mod:`.command`): its figures and their table
(:mod:`.figures`), the measurement loops (:mod:`.steps`), time to a threshold
(:mod:`.threshold`), and the phases that fill the figures (:mod:`.phases`)."""
