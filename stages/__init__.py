"""The pipeline's stage scripts (`python -m stages.<name>`): each owns its paths and params section and calls
the library with plain arguments."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines drown the messages that matter
