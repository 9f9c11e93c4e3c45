"""Sweeps, ``python -m seq2seq sweep`` (:mod:`.command`): the sweep file and its variants
(:mod:`.spec`), training them in the output folder (:mod:`.running`), their test scores and
table rows (:mod:`.scoring`), and the tables and plots that compare them (:mod:`.comparison`)."""
