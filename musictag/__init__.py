"""musictag: reproducible CNN music tagging (Choi et al. 2017, as reproduced in the 2018 dissertation)."""

__version__ = "0.1.0"
