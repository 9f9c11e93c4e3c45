"""The typed configuration: one frozen dataclass a section, loaded from YAML and dotted overrides.

:mod:`.sections` defines the sections and their checks, :mod:`.loading` how a file and
overrides become a :class:`Config`; :mod:`.parsing` reads YAML, JSON and text with bounds on
size and nesting. The names below are the public ones.
"""

from .loading import from_dict, load_config, parse_override
from .sections import (
    MAX_BPE_VOCAB,
    MAX_LEN_OFFSET,
    MAX_LEN_RATIO,
    MAX_LENGTH_PENALTY,
    MAX_LR,
    SECTIONS,
    SEED_LIMIT,
    Config,
    ConfigError,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = ["MAX_BPE_VOCAB", "MAX_LEN_OFFSET", "MAX_LEN_RATIO", "MAX_LENGTH_PENALTY", "MAX_LR", "SECTIONS",
           "SEED_LIMIT", "Config", "ConfigError", "DataConfig", "DecodeConfig", "ModelConfig", "TrackingConfig",
           "TrainConfig", "from_dict", "load_config", "parse_override"]
