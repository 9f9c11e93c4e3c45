"""The prepared GPU check, ``python -m seq2seq gpu_check`` (:mod:`.command`): the CUDA checks
(:mod:`.checks`), the parts it times and records (:mod:`.parts`), and the report with its
goals (:mod:`.report`)."""
