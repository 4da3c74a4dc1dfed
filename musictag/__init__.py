"""musictag: reproducible CNN music tagging (Choi et al. 2017, as reproduced in the 2018 dissertation)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines drown the messages that matter

__version__ = "0.1.0"
